// A recording reverse proxy for the gateway tests: sits between the gateway
// and an HTTP MCP server and records, per request, the method, path, every
// request header, the request body and (up to 1 MiB) the answer, while
// streaming both ways unchanged (SSE answers are relayed as they arrive).
// The tests read `log` to assert what the upstream received.
import { createServer, request } from 'node:http';

const MAX_RECORDED = 1 << 20;

/**
 * @param {object} o
 * @param {string} o.target  the upstream's origin, e.g. http://127.0.0.1:3001
 */
export function startRecorder({ target, port = 0, host = '127.0.0.1' }) {
    const up = new URL(target);
    const log = [];
    const server = createServer((req, res) => {
        const entry = { seq: log.length, method: req.method, path: req.url, headers: { ...req.headers }, body: '', status: 0, answer: '' };
        log.push(entry);
        const out = request(
            { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
            ures => {
                entry.status = ures.statusCode;
                entry.answerHeaders = { ...ures.headers };
                res.writeHead(ures.statusCode, ures.rawHeaders);
                res.flushHeaders();
                ures.on('data', c => {
                    if (entry.answer.length < MAX_RECORDED) entry.answer += c.toString('utf8');
                    res.write(c);
                });
                ures.on('end', () => res.end());
                ures.on('error', () => res.destroy());
            }
        );
        out.on('error', err => {
            entry.error = err.message;
            if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
            res.end(`recorder: ${err.message}`);
        });
        req.on('data', c => {
            if (entry.body.length < MAX_RECORDED) entry.body += c.toString('utf8');
            out.write(c);
        });
        req.on('end', () => out.end());
        res.on('close', () => out.destroy());
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
            resolve({
                url: `http://${host}:${server.address().port}`,
                log,
                close: () =>
                    new Promise(r => {
                        server.close(() => r());
                        server.closeAllConnections();
                    })
            });
        });
    });
}
