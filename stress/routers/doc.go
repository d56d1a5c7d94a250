// Package routers holds the router matrix: the session middleware under
// the real routers people use (net/http's ServeMux nested and behind
// wrappers, gorilla/mux, chi, Echo, gin), each checked for lost updates on
// Exclusive routes, the mode every handler sees, and read-only routes
// running in parallel. The routers are test-only dependencies of this
// tools module; the middleware itself depends on none of them.
package routers
