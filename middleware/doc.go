// Package middleware is ASP.NET's session-state module for net/http: it
// loads each request's session through a provider.Provider, locks it for
// the requests that need the lock, and commits or releases it when the
// handler is done, before the handler's buffered response goes out (see
// Lifecycle). Handlers get their session with FromContext.
//
//	p, _ := provider.New(memstore.New(memstore.Config{}), provider.Config{})
//	mgr, _ := middleware.New(middleware.Config{
//		Provider: p,
//		Rules: []middleware.Rule{
//			{Pattern: "/static/", Mode: middleware.Off},
//			{Pattern: "GET /cart", Mode: middleware.ReadOnly},
//		},
//	})
//	mux := http.NewServeMux()
//	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
//		s := middleware.FromContext(r.Context())
//		n, _, _ := session.Get[int](s, "items")
//		_ = s.Set("items", n+1)
//	})
//	mux.Handle("GET /events", mgr.WithMode(middleware.LockFree, events))
//	http.ListenAndServe(addr, mgr.Handler(mux))
//
// # Modes
//
// Every request is served in one mode (ASP.NET's EnableSessionState):
//
//   - Exclusive (default, =true): the session's lock is taken before the
//     handler runs. Requests of the same session run one at a time, in
//     arrival order; a request waits while another holds the lock (see
//     package lock for how).
//   - ReadOnly (=ReadOnly): no lock. Read-only requests run in parallel
//     with each other; by default they wait while an exclusive request
//     holds the session, as in ASP.NET, so they see that request's
//     changes (Config.ReadOnlyNoWait reads the last committed values at once
//     instead). Changes fail with ErrReadOnly and nothing is stored.
//   - Off (=false): the session is not loaded; FromContext returns nil; the
//     request makes no store operation at all. For static files, health
//     checks, metrics.
//   - LockFree: no lock and no waiting; at the end only the keys this
//     request set, deleted or cleared are merged into the stored session in
//     a compare-and-swap loop, so requests that change different keys never
//     lose each other's change; on the same key the last writer wins. The
//     global Config.ExclusiveAccess = false (ASP.NET's exclusiveAccess)
//     turns every Exclusive and Auto route into LockFree.
//   - Auto: see below.
//
// # How a request's mode is decided, and when the session is loaded
//
// The request's session, and everything the middleware knows about it,
// rides in the request's context: every handler of the same Manager the
// request passes (Handler around the router, WithMode or Middleware on
// the route, Handler inside the router) and FromContext find it, whatever
// router or wrapper sits between them, including wrappers that replace
// the request with r.WithContext.
//
// A route's mode comes from, strongest first: WithMode (or Middleware)
// around the route's handler, the innermost one winning; a Rule matching
// the route's pattern exactly, then the longest Rule matching its path as
// a prefix; Config.DefaultMode. The pattern is what Config.RoutePattern
// returns: by default http.Request.Pattern, which the Go 1.22 ServeMux
// sets; one line plugs in gorilla/mux, chi, Echo or gin (see
// Config.RoutePattern). The middleware depends on no router.
//
// The session is loaded, and an Exclusive route's lock taken, by the
// first (outermost) handler of the Manager, before anything below it
// runs, so an Exclusive route holds its lock before its handler runs,
// whether or not the handler touches the session (as ASP.NET's
// AcquireRequestState). That handler decides with what it knows: its own
// WithMode; around a whole *http.ServeMux, the route the mux will pick
// (its WithMode or its pattern); else the rules with the pattern known so
// far (none before a third-party router has routed). A later decision
// takes over: a handler of the Manager further in (WithMode on the route:
// it always wins over rules), or the handler's first FromContext, which
// matches the rules again with the pattern the router has set by then.
// When the mode changes, the session is released and loaded again in the
// new mode before the handler gets it: one extra store round trip, which
// wrapping the ServeMux directly, or putting the Manager where the router
// has routed (gorilla's r.Use, chi's r.With or r.Group), avoids.
//
// Fail safe: rules that only a route pattern can match (method patterns
// such as "GET /cart", wildcards) cannot match while no pattern is known
// (before routing, behind a wrapper that hides the mux's pattern, below a
// subtree route of a nested mux); such a request, unless a path rule
// matches it, is served Exclusive instead of the DefaultMode, and that is
// logged once. After the handler has its session (FromContext), only a
// WithMode(Exclusive) still changes the mode: an unchanged session is
// loaded again with the lock (logged once); a session already changed in
// another mode is not stored and the request is answered with an error
// (ErrModeConflict), never served lock-free. A weaker mode asked for then
// is logged once and the request keeps its mode.
//
// # Auto and its risk
//
// Auto (after memcached-session-manager's "auto" lock mode) learns, per
// route (matched pattern, else path), whether the route writes to the
// session. A route starts Exclusive. After AutoConfig.QuietRequests
// requests in a row (default 20) ended without changing the session it is
// served LockFree: no lock, no waiting. The first request that changes the
// session puts the route back to Exclusive; that request's own change is
// not lost, because LockFree commits merge only the changed keys into the
// current stored session. The tracker remembers at most
// AutoConfig.MaxRoutes routes (default 1024, least recently used forgotten
// first; a forgotten route starts again as Exclusive).
//
// The risk: while a route is lock-free, its requests neither wait for nor
// exclude an exclusive request of the same session. They may read values
// an exclusive request is about to change (a stale read), and a
// read-modify-write they make (a counter increment, an append to a list)
// can overwrite a concurrent change of the same key: one update is lost.
// Only distinct keys are safe. Use Auto for routes that rarely write, and
// where an occasional lost update on a key they share with other routes is
// acceptable; use Exclusive where it is not.
//
// # Lifecycle of a request
//
//   - The session id is read (cookie, or URL in cookieless mode) and
//     checked before anything else: malformed ids (wrong length or
//     alphabet, duplicate cookies) never reach the store; the request gets
//     a fresh session.
//   - The session is loaded before the handler runs (see above). In
//     Exclusive mode that takes the lock, waiting in the session's queue;
//     a wait that exceeds the provider's maximum wait or the request's own
//     deadline, or finds the queue full, ends in the ErrorHandler
//     (default: 503 with Retry-After), as does a store that cannot be
//     reached (nothing was written). A lock acquisition whose outcome is
//     unknown (provider.ErrOutcomeUnknown) is answered 500 without
//     Retry-After, "session not loaded: the store's outcome is unknown
//     (the session may stay locked for up to a lease)": it may have
//     landed, a lock no request holds, which the session's next requests
//     wait out (or the store's write of a load was of unknown outcome,
//     with no lock at stake). A client that disconnects while
//     waiting leaves the queue and gets no answer.
//     An id the store does not know is never adopted: the request gets a
//     new session, which gets a fresh id.
//   - While the handler runs, the lock's lease is renewed in the background
//     (provider.KeepLease), so a slow handler keeps its lock however long it
//     runs, and a crashed process's lock is taken over after one lease.
//   - The handler's response is buffered (ASP.NET buffers it too, and
//     releases the session in ReleaseRequestState, before the response is
//     flushed): status, headers and body are held back in Exclusive,
//     LockFree and Auto requests.
//   - When the handler returns, the renewals stop, then the session is
//     committed only if its values or its timeout changed; otherwise the
//     lock is only released, which also slides the session's expiry by its
//     own timeout. This runs with a context the client's disconnect does
//     not cancel, bounded by Config.CommitTimeout. Only then does the
//     buffered response go out.
//   - If the commit fails (the store is down, the lock was taken over and
//     the write fenced with provider.ErrLockLost, a lock-free commit ran
//     out of retries), the buffered response is dropped, headers and the
//     new session's cookie included, and the ErrorHandler answers an error
//     wrapping ErrNotStored instead: by default 409 Conflict for a fenced
//     write (the request lost the session to another one; its change was
//     not applied, a retry may succeed), 500 without Retry-After when the
//     commit's outcome is unknown (provider.ErrOutcomeUnknown: the change
//     may have been applied; the provider has already read the record
//     once to tell, docs/protocol.md), 413 Request Entity Too Large for
//     a session over its size limit (provider.ErrTooLarge: nothing stored,
//     the lock released in the same write; a retry would fail the same
//     way) and 500 otherwise. The session is committed before the first
//     byte of a streamed response goes out, so a too-large session is
//     always answered while the response is still held back; after that
//     the session cannot change (ErrCommitted). A handler's own
//     Session.Commit gets the error itself. A client never
//     gets a 2xx for a change that was not stored. The failure is logged
//     and counted. After a commit whose outcome is unknown or that found
//     the store unavailable (and after one its own context cancelled), the
//     request's lock is released, best effort, with the same bound, so
//     the user's next request does not wait a lease; the answer stays
//     as decided. A request that changed nothing and only failed to
//     release its lock keeps its answer: it lost nothing, and the lock
//     ends with its lease.
//   - A handler that panics drops its buffered response, releases the lock
//     without storing any of its changes, and the panic goes on to the
//     server.
//
// Streaming stays possible. Flush (http.Flusher or
// http.ResponseController), Hijack, a 101 Switching Protocols status, or
// a body that outgrows Config.ResponseBufferLimit (default 1 MiB) commit
// the session early, exactly as Session.Commit does, send what is
// buffered and let the rest of the response stream through unbuffered; a
// later change of the session in that request fails with ErrCommitted. If
// that early commit fails, the error is answered as above, Flush
// (FlushError), Hijack and Write return an error wrapping ErrNotStored,
// and the handler's further output is dropped. Long-polling handlers call
// Session.Commit before they wait, so that other requests of the session
// are not held up; their response stays buffered until they return (or
// flush). A handler whose Commit fails may answer the error itself with a
// status of 400 or above; a success status is replaced as above. Code
// that unwraps the writer (Unwrap) and writes to the writer below
// bypasses the buffer.
//
// Read-only requests are not buffered: they store nothing, so nothing can
// fail after they have answered. Off requests get the handler's writer
// untouched.
//
// Config.Unbuffered turns buffering off, as before: the response goes
// out as the handler writes it and the session is committed after the
// handler returns. Its risk is the lost acknowledged write: a commit that
// fails then cannot change the 2xx the client already has; it is only
// logged and counted. Handlers that write can avoid it by calling
// Session.Commit before they answer. Buffering costs the memory of the
// buffered body per request in flight (bounded by ResponseBufferLimit)
// and holds the first byte back until the commit; serve large static
// files on Off routes.
//
// Sessions are lazy: a new visitor's session has no id until a handler
// writes to it (Set, or SetTimeout to another value). A visitor whose
// handlers only read gets no cookie and causes no store operation. The id
// is sent in a cookie; with the response buffered, a handler can write to
// a new session at any time before its response streams. Only without
// buffering (Config.Unbuffered) must the first write to a new session
// happen before the response headers go out (else ErrHeadersSent).
//
// Abandon removes the session at the end of the request and deletes the
// cookie; a Set after it in the same request starts a new session (sign
// out, then leave a flash message). Pop reads a value and deletes it (a
// flash message shown once), also on ReadOnly routes, where the deletion
// is a lock-free conditional write (see Session.Pop). RegenerateID moves the session to a new id, sending the new
// cookie at once and removing the old record at the end of the request:
// call it when a user signs in, so that an id planted before sign-in
// (session fixation) is worthless afterwards.
//
// # Cookies
//
// The cookie (CookieConfig) is named "session_id", for path "/", HttpOnly,
// SameSite=Lax, Secure when the request came over TLS (set Secure behind a
// TLS-terminating proxy, or TrustForwardedProto to follow its
// X-Forwarded-Proto or Forwarded header), optionally Partitioned (CHIPS),
// and has no expiry: the session's own timeout limits its life on the
// server. Session.RememberMe (per session) or CookieConfig.Persistent (for
// all) make it persistent, with the session's timeout as its Max-Age, sent
// again on every request that slides the session's expiry. Names starting
// "__Host-" or "__Secure-" are always Secure, and New refuses the settings
// browsers would drop them for. A response that sets or deletes the cookie
// gets Cache-Control: private, no-cache="Set-Cookie" (unless the handler's
// is already private or no-store) and Vary: Cookie, so a shared cache never
// hands one session's id to other users.
//
// # Cookieless mode
//
// With Config.Cookieless the id travels in the URL path, as ASP.NET's
// cookieless="true": /(S(<id>))/rest/of/path. The middleware strips that
// segment before routing, so routes are written without it, and pages must
// build every link and redirect with Session.URL or Link. Redirects to a
// path on the same site that lack the id (the ServeMux's "/dir" to
// "/dir/", http.Redirect with a path) get it put back in front. It is off by
// default because it is much weaker: the id, which is the user's
// credential, shows in browser history, bookmarks, server and proxy logs
// and Referer headers sent to other sites, and is handed on with every
// copied link; anyone who follows such a link is in the session. It also
// makes session fixation easy: an attacker can send a victim a link that
// carries the attacker's live session. Use it only where cookies cannot
// be, with short timeouts and RegenerateID at sign-in.
//
// # Observability
//
// Errors go to Config.Logger (log/slog); session ids are shortened in
// everything logged, store error strings included. Config.Observer (nil:
// off) is told what the middleware does; the Prometheus collector (its
// own module, github.com/sessionlock/sessionlock/middleware/prometheus,
// so that only its users depend on client_golang) is one, LogEvents
// another, Observers combines them. Stores report node events (down, up,
// failover, repair, fallback) through their Config.OnEvent: plug an
// Observer's StoreEvent method in there, and the events reach the metrics
// and the log. See Observer.
package middleware
