// HTTP/1.1 Upgrade (WebSocket, RFC 6455 §4; RFC 9110 §7.8) through the waypoint. The request is
// routed, authorized and filtered like any other; when the endpoint answers 101 the two
// connections are joined byte for byte. Node's HTTP server hands an upgrade request over as a
// raw socket, so answers to it are written raw too: RawResponse.
import { EventEmitter } from 'node:events';
import { STATUS_CODES, type OutgoingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';

/** The client side of an upgrade: its socket, and the bytes it sent after the request head. */
export interface UpgradeSide {
  socket: Duplex;
  head: Buffer;
}

/**
 * The Downstream of an upgrade request. A 101 goes out with the endpoint's Connection and Upgrade
 * fields; any other answer ends the connection after its body (close-delimited, RFC 9112 §6.3),
 * since what follows an unanswered upgrade request on it is unknown.
 */
export class RawResponse extends EventEmitter {
  headersSent = false;
  private readonly socket: Duplex;

  constructor(socket: Duplex) {
    super();
    this.socket = socket;
    socket.on('drain', () => this.emit('drain'));
    socket.once('close', () => this.emit('close'));
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): this {
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined) continue;
      if (status !== 101 && (name === 'connection' || name === 'transfer-encoding')) continue;
      for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`);
    }
    if (status !== 101) lines.push('connection: close');
    this.socket.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    this.headersSent = true;
    return this;
  }

  write(chunk: Buffer): boolean {
    return this.socket.write(chunk);
  }

  end(chunk?: Buffer): this {
    this.socket.end(chunk, () => this.emit('finish'));
    return this;
  }

  addTrailers(): void {}

  destroy(): void {
    this.socket.destroy();
  }
}
