package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/sessionlock/sessionlock/middleware"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/session"
	"github.com/sessionlock/sessionlock/store/memstore"
)

// client sends requests to h carrying the session cookie it was last given,
// as a browser does, and returns the response body.
type client struct {
	h      http.Handler
	cookie *http.Cookie
}

func (c *client) do(method, path string) string {
	r := httptest.NewRequest(method, path, nil)
	if c.cookie != nil {
		r.AddCookie(c.cookie)
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.Name == middleware.DefaultCookieName {
			c.cookie = ck
			if ck.MaxAge < 0 {
				c.cookie = nil
			}
		}
	}
	return w.Body.String()
}

// newManager returns a Manager over a fresh in-memory store.
func newManager() (*middleware.Manager, func()) {
	store := memstore.New(memstore.Config{})
	p, err := provider.New(store, provider.Config{})
	if err != nil {
		panic(err)
	}
	m, err := middleware.New(middleware.Config{Provider: p})
	if err != nil {
		panic(err)
	}
	return m, func() { store.Close() }
}

// A counter in the session: an Exclusive route writes it, a ReadOnly route
// reads it.
func Example() {
	store := memstore.New(memstore.Config{})
	defer store.Close()
	p, err := provider.New(store, provider.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := middleware.New(middleware.Config{Provider: p})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("POST /cart", m.WithMode(middleware.Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		n, _, err := session.Get[int](s, "items")
		if err == nil {
			err = s.Set("items", n+1)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "added, %d in cart", n+1)
	})))
	mux.Handle("GET /cart", m.WithMode(middleware.ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _, _ := session.Get[int](middleware.FromContext(r.Context()), "items")
		fmt.Fprintf(w, "%d in cart", n)
	})))

	browser := &client{h: mux}
	fmt.Println(browser.do("GET", "/cart"))
	fmt.Println(browser.do("POST", "/cart"))
	fmt.Println(browser.do("POST", "/cart"))
	fmt.Println(browser.do("GET", "/cart"))
	// Output:
	// 0 in cart
	// added, 1 in cart
	// added, 2 in cart
	// 2 in cart
}

// A flash message: set on a POST, shown once by a read-only page.
func ExampleSession_Pop() {
	m, closeStore := newManager()
	defer closeStore()
	mux := http.NewServeMux()
	mux.Handle("POST /save", m.WithMode(middleware.Exclusive, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = middleware.FromContext(r.Context()).Set("flash", "Saved.")
	})))
	mux.Handle("GET /", m.WithMode(middleware.ReadOnly, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg, ok, _ := session.Pop[string](middleware.FromContext(r.Context()), "flash")
		fmt.Fprintf(w, "page (flash: %q, %v)", msg, ok)
	})))

	browser := &client{h: mux}
	browser.do("POST", "/save")
	fmt.Println(browser.do("GET", "/"))
	fmt.Println(browser.do("GET", "/"))
	// Output:
	// page (flash: "Saved.", true)
	// page (flash: "", false)
}

// Signing out: Abandon removes the session, and a Set afterwards starts a
// new one that carries the message.
func ExampleSession_Abandon() {
	m, closeStore := newManager()
	defer closeStore()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		_ = s.RegenerateID() // a new id at sign-in: no session fixation
		_ = s.Set("user", "ann")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		_ = s.Abandon()
		_ = s.Set("flash", "You have been signed out.")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		user, _, _ := session.Get[string](s, "user")
		msg, _, _ := session.Pop[string](s, "flash")
		fmt.Fprintf(w, "user=%q flash=%q", user, msg)
	})
	browser := &client{h: m.Handler(mux)}
	browser.do("POST", "/login")
	fmt.Println(browser.do("GET", "/"))
	browser.do("POST", "/logout")
	fmt.Println(browser.do("GET", "/"))
	fmt.Println(browser.do("GET", "/"))
	// Output:
	// user="ann" flash=""
	// user="" flash="You have been signed out."
	// user="" flash=""
}

// Remember me: the cookie becomes persistent, its Max-Age the session's
// timeout.
func ExampleSession_RememberMe() {
	m, closeStore := newManager()
	defer closeStore()
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := middleware.FromContext(r.Context())
		_ = s.Set("user", "ann")
		_ = s.RememberMe(r.FormValue("remember") == "on")
	}))
	for _, target := range []string{"/login", "/login?remember=on"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", target, nil))
		fmt.Println(target, "Max-Age:", w.Result().Cookies()[0].MaxAge)
	}
	// Output:
	// /login Max-Age: 0
	// /login?remember=on Max-Age: 1200
}
