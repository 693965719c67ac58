// @peculiar/x509 with its prerequisites in place. Import x509 only through this module:
// tsyringe (its DI container) needs the Reflect metadata polyfill loaded first, and the library
// must be pointed at Node's WebCrypto. ESM evaluates imports in order, so the polyfill runs first.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export const subtle = webcrypto.subtle;
