// Package decision is the policy engine of mcp-pdp: it builds the Rego input
// for one MCP request, evaluates the prepared query data.mcp.authz.decision
// (OPA as a library) and returns a typed Result.
//
// A Policy is compiled once per load and shared by all goroutines; an Engine
// holds the active Policy behind an atomic pointer so a reload swaps it
// without stopping decisions already under way. The data format of the
// default policy (catalog validation, the catalog index, file:line of data
// problems) is package internal/catalog, which Prepare calls.
//
// Files: policy.go loads and prepares a policy, input.go and token.go build
// its input, engine.go decides (Policy.Decide, Policy.Eval), result.go reads
// the answer, cache.go and callcache.go are the decision caches, analysis.go
// the static analyses they rely on, explain.go serves pdp eval.
//
// # Caching
//
// A request that the PDP has answered before is answered again without an
// evaluation, through a chain of caches. Each one is an optimization only:
// the answer equals what Policy.Eval returns for Input.Value, the whole input
// (FuzzCacheEquivalence checks this for random requests and policies). In
// the order a request meets them:
//
//  1. The verified-token cache (internal/token, Cache) is keyed on the
//     SHA-256 of the raw token and the verifier's configuration, and
//     returns the same *token.Claims for the same token until it expires
//     (or its MaxTTL). Only successful verifications are kept; a verifier
//     without a cache verifies every time.
//
//  2. The token memo (internal/core, tokenMemo) is keyed on that *Claims
//     pointer and returns the same *Token, built once by NewToken. A
//     Claims that did not come from the cache is a new pointer: a new Token,
//     not a wrong one. Anonymous requests have no Token.
//
//  3. A Token memoizes its Rego value (termFor, keyTermFor): one term with
//     every claim, one with only the claims a policy reads and one cache
//     key term (subject replaced by what the subject lookups find), each
//     kept for the last policy that asked, recognized by the identity of
//     that policy's claimKeys and subjectKeying. Another policy rebuilds
//     the term. Neither a Token nor the claims given to NewToken may be
//     modified afterwards.
//
//  4. The call cache (callCache, per Policy) answers single-target requests
//     without building the input. It is keyed on resource, method, target,
//     the raw call arguments when the policy reads them, and the identity
//     of the token's key term from layer 3: equal keys mean equal inputs.
//     The key holds the term, so its address cannot be reused for another
//     token. It is bypassed for lists and for arguments given as a Rego
//     value (Input.Arguments), and emptied when it holds callCacheSize
//     entries.
//
//  5. The result cache (resultCache, per Policy) is keyed on the input
//     value as the policy can see it: without call arguments unless the
//     policy reads them, without input.items unless it reads them, with
//     only the claims it reads, and with the subject replaced by what its
//     subject lookups find in data. Equal tokens that are different objects
//     meet here. It is bounded by weight (one unit per decision and per list
//     item, more with a token) and evicts first in, first out.
//
//  6. The list memo (listMemo, per Policy) is for the list filter
//     (internal/listfilter), in front of layers 4 and 5: a filtered list
//     kept by ListMemoKey (resource, method, the token's key term as in
//     layer 4) and the list's exact bytes, bounded by bytes and emptied
//     when full.
//
// Layers 4 to 6 exist only for a deterministic policy with the cache on;
// Options.CacheSize < 0, a call of a non-deterministic built-in (time.now_ns,
// http.send, ...) in the policy, or Recording turns them off. A reload
// prepares a new Policy, whose caches start empty; a Result from a cache is
// shared and read-only.
//
// The caches are right only while these hold:
//
//   - nondeterministicCall finds every non-deterministic built-in call:
//     the decision is then a function of the input and the policy's data,
//     and the data is fixed per Policy.
//   - readsArguments is true whenever a rule can read input.tool.arguments
//     or input.target.arguments, readsItems whenever one can read
//     input.items, and claimsRead names every claim a rule can read (nil:
//     any), so that what the key leaves out cannot change the decision.
//   - subjectLookups returns paths only when every read of input.token.sub
//     is a key into plain data at one of them (no rule defined at, above or
//     below it), so that two subjects those lookups treat alike are decided
//     alike.
//   - Input.Class is ClassifyMethod(Input.Method): the call cache keys on
//     the method only.
//
// Each analysis is conservative: when in doubt it says "reads".
package decision
