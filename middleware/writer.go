package middleware

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// responseWriter notes when the response headers have gone out, after
// which a new session id can no longer be sent in a cookie. It keeps the
// optional interfaces reachable: Flush and Hijack directly, the others
// through Unwrap (http.ResponseController).
type responseWriter struct {
	http.ResponseWriter
	sent atomic.Bool
}

// WriteHeader implements http.ResponseWriter.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.sent.Store(true)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *responseWriter) Write(b []byte) (int, error) {
	w.sent.Store(true)
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's fast path (sendfile) available.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	w.sent.Store(true)
	return io.Copy(w.ResponseWriter, r)
}

// Flush implements http.Flusher; it does nothing when the underlying
// writer cannot flush.
func (w *responseWriter) Flush() {
	w.sent.Store(true)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker; it fails with http.ErrNotSupported when
// the underlying writer cannot be hijacked.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.sent.Store(true)
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headersSent reports whether the response headers may have gone out.
func (w *responseWriter) headersSent() bool { return w.sent.Load() }
