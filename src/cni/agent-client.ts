// The agent's control API (src/agent/control.ts: one JSON request per line, one reply per line),
// spoken directly rather than through controlRequest: that module pulls in the agent's logger,
// and the plugin, a fresh process per pod, loads as little as it can.
import net from 'node:net';

/** The agent could not be reached at all (as opposed to refusing the request). */
export class AgentUnreachable extends Error {
  readonly code = 'MESH_ERR_AGENT_UNREACHABLE';
}

export class AgentRefused extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export function agentRequest(socket: string, req: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let buf = '';
    let answered = false;
    const fail = (e: Error) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      conn.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new AgentUnreachable(`the mesh agent at ${socket} did not answer within ${timeoutMs} ms`)), timeoutMs);
    conn.once('error', (e) => fail(new AgentUnreachable(`cannot reach the mesh agent at ${socket}: ${e.message}`)));
    conn.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      answered = true;
      clearTimeout(timer);
      conn.end();
      try {
        const reply = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
        if (reply.ok) resolve(reply.result);
        else reject(new AgentRefused(reply.error?.code ?? 'MESH_ERR_INTERNAL', reply.error?.message ?? 'the agent refused the request'));
      } catch (e) {
        reject(new AgentRefused('MESH_ERR_INTERNAL', `the agent's reply is not JSON: ${(e as Error).message}`));
      }
    });
    conn.once('close', () => fail(new AgentUnreachable(`the mesh agent at ${socket} closed the connection without answering`)));
    conn.write(`${JSON.stringify(req)}\n`);
  });
}
