// Structural schemas of CRDs (src/local/apiserver/schema.ts): what defaulting, pruning and
// validation do to an object, case by case, with the messages a real API server sends.
import test from 'ava';
import { applyDefaults, prune, validateSchema } from '../../src/local/apiserver/schema.ts';

const SCHEMA = {
  type: 'object',
  properties: {
    spec: {
      type: 'object',
      required: ['mode'],
      properties: {
        mode: { type: 'string', enum: ['A', 'B'], default: 'A' },
        note: { type: 'string', nullable: true },
        count: { type: 'integer', minimum: 0, exclusiveMinimum: true, maximum: 3 },
        ratio: { type: 'number' },
        port: { 'x-kubernetes-int-or-string': true },
        env: { type: 'object', additionalProperties: { type: 'string' } },
        free: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        items: { type: 'array', 'x-kubernetes-list-type': 'set', items: { type: 'string', default: 'x' } },
        nested: { type: 'object', default: {}, properties: { level: { type: 'integer', default: 2 } } },
      },
    },
  },
};

test('schema-defaults-fill-absent-fields-and-nulls-that-are-not-nullable', (t) => {
  const obj = { spec: { mode: null, note: null } };
  applyDefaults(obj, SCHEMA);
  t.deepEqual(obj, { spec: { mode: 'A', note: null, nested: { level: 2 } } });
});

test('schema-prune-drops-undeclared-fields-but-keeps-preserved-maps-and-root-metadata', (t) => {
  const obj = { apiVersion: 'x/v1', kind: 'K', metadata: { name: 'n' }, spec: { mode: 'A', typo: 1, env: { A: 'b' }, free: { anything: { deep: [1] } } }, other: true };
  t.deepEqual(prune(obj, SCHEMA), ['spec.typo', 'other']);
  t.deepEqual(obj, { apiVersion: 'x/v1', kind: 'K', metadata: { name: 'n' }, spec: { mode: 'A', env: { A: 'b' }, free: { anything: { deep: [1] } } } });
});

test('schema-validation-names-each-field-in-kubernetes-words', (t) => {
  const causes = validateSchema({ spec: { count: 0, ratio: 1.5, port: true, env: { A: 1 }, items: ['a', 'a'], note: null } }, SCHEMA);
  t.deepEqual(
    causes.map((c) => `${c.field}: ${c.message}`),
    [
      'spec.mode: Required value',
      'spec.count: Invalid value: 0: spec.count in body should be greater than 0',
      'spec.port: Invalid value: true: spec.port in body must be of type integer,string: "boolean"',
      'spec.env.A: Invalid value: 1: spec.env.A in body must be of type string: "integer"',
      'spec.items[1]: Duplicate value: "a"',
    ],
  );
  t.deepEqual(validateSchema({ spec: { mode: 'A', port: 'http', ratio: 2 } }, SCHEMA), []);
});
