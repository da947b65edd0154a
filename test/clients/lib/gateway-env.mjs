// The environment of gateway.test.mjs: mcp-pdp's gateway in front of an
// unmodified third-party MCP server, @modelcontextprotocol/server-everything
// (installed from package-lock.json, started with node, never npx), once over
// stdio and once over its Streamable HTTP mode.
//
//   SDK client ──► pdp serve (gateway.listen) ──stdio──► node server-everything stdio
//        │              │        (one child per MCP session, started by the gateway;
//        │              │         lib/record-stdin.mjs records what it reads)
//        │              └──HTTP──► recorder (lib/recorder.mjs) ──► node server-everything streamableHttp
//        └──────────► test authorization server (lib/as.mjs), scopes math:sum and weather:read
//
// PDP_AUDIT=1 turns audit on (embedded NATS), as for run.sh's other PDP.
// Everything listens on 127.0.0.1 (server-everything's HTTP mode binds every
// interface by itself; lib/loopback-listen.mjs pins it to loopback). The AS and
// the recorder run in the test process; server-everything (HTTP) and pdp are
// child processes, stopped by close() (SIGTERM, then SIGKILL after 5 s) and,
// should the test process die first, killed on its exit.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, createWriteStream, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startAS } from './as.mjs';
import { startRecorder } from './recorder.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const require = createRequire(import.meta.url);

/** The entry point of the installed server-everything (its package.json "bin"). */
export const EVERYTHING_ENTRY = join(dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')), 'dist', 'index.js');
/** The installed inspector CLI (its package.json "bin"). */
export const INSPECTOR_CLI = join(dirname(require.resolve('@modelcontextprotocol/inspector-cli/package.json')), 'build', 'cli.js');

export const SCOPE_A = 'math:sum';
export const SCOPE_B = 'weather:read';

/** The catalog the gateway enforces for both resources: server-everything's tools by class. */
export const CATALOG = {
    public: ['echo', 'get-annotated-message', 'get-tiny-image'],
    stepUp: { 'get-sum': SCOPE_A, 'get-structured-content': SCOPE_B },
    hidden: 'get-env' // access: deny; every other tool is hidden too (unknown: deny)
};

const freePort = () =>
    new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

async function freePorts(n) {
    const ps = [];
    while (ps.length < n) {
        const p = await freePort();
        if (!ps.includes(p)) ps.push(p);
    }
    return ps;
}

/** A child process whose output goes to a log file and which is stopped by stop(). */
function startProcess(name, argv, { env, logFile }) {
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const file = createWriteStream(logFile);
    const onData = c => {
        out.push(c);
        file.write(c);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const exited = once(child, 'exit');
    const kill = () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    process.on('exit', kill);
    return {
        name,
        child,
        logFile,
        output: () => Buffer.concat(out).toString('utf8'),
        running: () => child.exitCode === null && child.signalCode === null,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) {
                child.kill('SIGTERM');
                const t = setTimeout(() => child.kill('SIGKILL'), 5000);
                await exited;
                clearTimeout(t);
            }
            process.off('exit', kill);
            await new Promise(r => file.end(r));
        }
    };
}

/** Polls until ok() is true, up to 20 s, failing early when proc exits. */
async function waitFor(what, proc, ok) {
    for (let i = 0; i < 200; i++) {
        if (proc && !proc.running()) throw new Error(`${proc.name} exited while waiting for ${what}:\n${proc.output()}`);
        if (await ok().catch(() => false)) return;
        await new Promise(r => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}${proc ? `:\n${proc.output()}` : ''}`);
}

const answers = async url => (await fetch(url, { signal: AbortSignal.timeout(1000) })).ok;

/** The policy directory: the repository's policies (*.rego, lib/) and our data.yaml. */
function writePolicy(dir, resources) {
    mkdirSync(join(dir, 'lib'), { recursive: true });
    const src = join(root, 'policies');
    for (const f of readdirSync(src)) if (f.endsWith('.rego')) copyFileSync(join(src, f), join(dir, f));
    for (const f of readdirSync(join(src, 'lib'))) if (f.endsWith('.rego')) copyFileSync(join(src, 'lib', f), join(dir, 'lib', f));
    const tools = [
        ...CATALOG.public.map(n => `        ${JSON.stringify(n)}: {access: public}`),
        ...Object.entries(CATALOG.stepUp).map(([n, s]) => `        ${JSON.stringify(n)}: {access: step_up, scopes: [${JSON.stringify(s)}]}`),
        `        ${JSON.stringify(CATALOG.hidden)}: {access: deny}`
    ];
    writeFileSync(
        join(dir, 'data.yaml'),
        `# Written by test/clients/lib/gateway-env.mjs: server-everything's tools.
mcp:
  default_catalog: everything
  resources:
${resources.map(uri => `    ${JSON.stringify(uri)}: {catalog: everything}`).join('\n')}
  revoked: {clients: {}, subjects: {}}
  hidden: []
  catalogs:
    everything:
      unknown: {access: deny}
      tools:
${tools.join('\n')}
      prompts: {}
      resources: {}
      resource_templates: {}
      methods:
        completion/complete: {access: public}
        logging/setLevel: {access: public}
`
    );
}

/**
 * Starts the environment.
 * @param {object} o
 * @param {string} o.pdpBin  the pdp binary
 * @returns the URLs, the recorder's log, the stdin log file, and close()
 */
export async function startGatewayEnv({ pdpBin }) {
    const tmp = mkdtempSync(join(tmpdir(), 'pdp-gateway-test.'));
    const started = [];
    const closers = [];
    let closing;
    const close = () =>
        (closing ??= (async () => {
            process.off('SIGTERM', onSignal);
            process.off('SIGINT', onSignal);
            await Promise.all(started.map(p => p.stop()));
            for (const c of closers.reverse()) await c();
            if (process.env.KEEP_TMP === '1') console.error(`kept ${tmp}`);
            else rmSync(tmp, { recursive: true, force: true });
        })());
    // Stopped from outside (node:test's file timeout, run.sh's timeout, ^C): stop the children
    // gracefully first (pdp then stops its stdio children's process groups), then exit.
    const onSignal = signal => {
        close().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    try {
        const as = await startAS({ scopes: [SCOPE_A, SCOPE_B] });
        closers.push(() => as.close());
        const [everythingPort, apiPort, gatewayPort] = await freePorts(3);

        // server-everything's Streamable HTTP mode (PORT is its only setting), behind the recorder.
        const everything = startProcess(
            'server-everything (streamableHttp)',
            [process.execPath, '--import', pathToFileURL(join(here, 'loopback-listen.mjs')).href, EVERYTHING_ENTRY, 'streamableHttp'],
            { env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(everythingPort) }, logFile: join(tmp, 'everything-http.log') }
        );
        started.push(everything);
        await waitFor('server-everything to listen', everything, async () => everything.output().includes(`listening on port ${everythingPort}`));
        const recorder = await startRecorder({ target: `http://127.0.0.1:${everythingPort}` });
        closers.push(() => recorder.close());
        const httpUpstream = `${recorder.url}/mcp`;

        const gateway = `http://127.0.0.1:${gatewayPort}`;
        const resources = { stdio: `${gateway}/everything-stdio/mcp`, http: `${gateway}/everything-http/mcp` };
        const policyDir = join(tmp, 'policy');
        writePolicy(policyDir, Object.values(resources));
        const stdinLog = join(tmp, 'stdio-stdin.jsonl');
        const stdioCommand = [process.execPath, '--import', pathToFileURL(join(here, 'record-stdin.mjs')).href, EVERYTHING_ENTRY, 'stdio'];
        const resource = (uri, upstream) => `  - uri: ${uri}
    issuer: ${as.issuer}
    jwks_uri: ${as.jwksUri}
    scopes_supported: [${SCOPE_A}, ${SCOPE_B}]
    challenge_scopes: accumulate
    upstream:
${upstream}`;
        const config = join(tmp, 'pdp.yaml');
        writeFileSync(
            config,
            `# Written by test/clients/lib/gateway-env.mjs.
listen: 127.0.0.1:${apiPort}
data_dir: ${join(tmp, 'data')}
instance: gateway-client-test
gateway:
  listen: 127.0.0.1:${gatewayPort}
resources:
${resource(resources.stdio, `      command: ${JSON.stringify(stdioCommand)}\n      env: {RECORD_STDIN: ${JSON.stringify(stdinLog)}}`)}
${resource(resources.http, `      url: ${httpUpstream}`)}
policy:
  path: ${policyDir}
  poll_interval: 0s
audit:
  enabled: ${process.env.PDP_AUDIT === '1'}
log:
  level: info
`
        );
        const pdp = startProcess('pdp serve', [pdpBin, 'serve', '--config', config], {
            env: { PATH: process.env.PATH, HOME: process.env.HOME },
            logFile: join(tmp, 'pdp.log')
        });
        started.push(pdp);
        await waitFor('pdp to be ready', pdp, () => answers(`http://127.0.0.1:${apiPort}/readyz`));
        await waitFor('the gateway', pdp, () => answers(`${gateway}/.well-known/oauth-protected-resource/everything-http/mcp`));

        return {
            tmp,
            as,
            gateway,
            resources,
            httpUpstream,
            everythingURL: `http://127.0.0.1:${everythingPort}/mcp`,
            recorder,
            stdinLog,
            pdp,
            everything,
            close
        };
    } catch (err) {
        await close();
        throw err;
    }
}
