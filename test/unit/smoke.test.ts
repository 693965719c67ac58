import test from 'ava';
type X = { a: number };
test('types strip', (t) => { const x: X = { a: 1 }; t.is(x.a, 1); t.is(process.versions.node.split('.')[0], '24'); });
