// A strict parser of WWW-Authenticate field values (RFC 7235 §4.1 / §2.1,
// RFC 7230 §3.2.6 tokens and quoted-strings) plus the RFC 6750 §3 rules for
// Bearer challenges. It throws on anything the grammar does not allow; it is
// independent of the SDK's lenient regular expressions and of the PDP's Go code.
//
//   WWW-Authenticate = 1#challenge
//   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//   auth-param  = token BWS "=" BWS ( token / quoted-string )
//   token       = 1*tchar
//   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

export function parseChallenges(value) {
    let i = 0;
    const s = value;
    const fail = why => {
        throw new Error(`invalid WWW-Authenticate at offset ${i}: ${why}: ${JSON.stringify(s)}`);
    };
    const ows = () => {
        while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    };
    const token = () => {
        const start = i;
        while (i < s.length && TCHAR.test(s[i])) i++;
        if (i === start) fail('token expected');
        return s.slice(start, i);
    };
    const quoted = () => {
        if (s[i] !== '"') fail('quoted-string expected');
        i++;
        let out = '';
        for (;;) {
            if (i >= s.length) fail('unterminated quoted-string');
            const c = s[i];
            const code = c.charCodeAt(0);
            if (c === '"') {
                i++;
                return out;
            }
            if (c === '\\') {
                const n = s.charCodeAt(i + 1);
                if (!(n === 0x09 || (n >= 0x20 && n <= 0x7e) || (n >= 0x80 && n <= 0xff))) fail('bad quoted-pair');
                out += s[i + 1];
                i += 2;
                continue;
            }
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            if (!(code === 0x09 || code === 0x20 || code === 0x21 || (code >= 0x23 && code <= 0x5b) || (code >= 0x5d && code <= 0x7e) || (code >= 0x80 && code <= 0xff))) {
                fail(`character U+${code.toString(16)} not allowed in quoted-string`);
            }
            out += c;
            i++;
        }
    };

    const challenges = [];
    // 1#challenge: empty list elements ("a, ,b") are allowed by the #rule (RFC 7230 §7).
    const skipEmptyElements = () => {
        for (;;) {
            ows();
            if (s[i] === ',') i++;
            else return;
        }
    };
    // After a comma: does an auth-param (token BWS "=") follow, rather than a new challenge?
    const authParamFollows = () => {
        const m = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=/.exec(s.slice(i));
        return !!m;
    };
    skipEmptyElements();
    if (i >= s.length) fail('no challenge');
    while (i < s.length) {
        const ch = { scheme: token(), params: {}, order: [], token68: undefined };
        challenges.push(ch);
        if (i < s.length && s[i] === ' ') {
            while (s[i] === ' ') i++;
            const t68 = /^[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(,|$))/.exec(s.slice(i));
            if (t68) {
                ch.token68 = t68[0];
                i += t68[0].length;
            } else if (i < s.length && s[i] !== ',') {
                // #auth-param
                for (;;) {
                    const name = token().toLowerCase();
                    ows();
                    if (s[i] !== '=') fail(`"=" expected after parameter ${name}`);
                    i++;
                    ows();
                    const val = s[i] === '"' ? quoted() : token();
                    if (Object.hasOwn(ch.params, name)) fail(`parameter ${name} repeated (RFC 7235 §2.1: each at most once)`);
                    ch.params[name] = val;
                    ch.order.push(name);
                    ows();
                    if (i >= s.length) break;
                    if (s[i] !== ',') fail('"," expected after a parameter');
                    skipEmptyElements();
                    if (i >= s.length || !authParamFollows()) break;
                }
            }
        }
        ows();
        if (i >= s.length) break;
        if (s[i] !== ',' && ch.order.length === 0) fail('"," or SP expected after a challenge');
        skipEmptyElements();
    }
    return challenges;
}

// RFC 6750 §3: the Bearer challenge's parameters. Returns the Bearer challenge.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/; // RFC 6749 §3.3 scope-token
const ERROR_CHARS = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/; // RFC 6750 §3 error, error_description
const ERRORS = new Set(['invalid_request', 'invalid_token', 'insufficient_scope']);

export function parseBearerChallenge(value) {
    const all = parseChallenges(value);
    const bearer = all.filter(c => c.scheme.toLowerCase() === 'bearer');
    if (bearer.length !== 1) throw new Error(`want exactly one Bearer challenge, got ${bearer.length}: ${value}`);
    const c = bearer[0];
    if (c.token68 !== undefined) throw new Error(`Bearer challenge uses token68, RFC 6750 wants auth-params: ${value}`);
    const p = c.params;
    if ('scope' in p) {
        const parts = p.scope.split(' ');
        if (p.scope === '' || parts.some(x => !SCOPE_TOKEN.test(x))) throw new Error(`scope is not a space-delimited list of scope-tokens: ${JSON.stringify(p.scope)}`);
    }
    for (const k of ['error', 'error_description', 'realm']) {
        if (k in p && !ERROR_CHARS.test(p[k])) throw new Error(`${k} has characters outside RFC 6750 §3: ${JSON.stringify(p[k])}`);
    }
    if ('error' in p && !ERRORS.has(p.error)) throw new Error(`error ${p.error} is not an RFC 6750 §3.1 code`);
    if ('resource_metadata' in p) new URL(p.resource_metadata); // RFC 9728 §5.1: an absolute URL
    return c;
}
