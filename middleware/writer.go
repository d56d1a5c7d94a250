package middleware

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// States of a responseWriter.
const (
	// buffering: the status and body the handler writes are held back
	// until the session is committed; the headers stay in the underlying
	// writer's map, unsent.
	buffering = iota
	// streaming: writes go straight to the underlying writer. The session
	// was committed first, or buffering is off for the request.
	streaming
	// failed: committing the session failed while the response was still
	// held back; the error was answered instead, and whatever the handler
	// writes from then on is dropped.
	failed
)

// responseWriter is the writer the handler gets. In Exclusive and
// LockFree requests it holds the response back (ASP.NET's buffered
// response) until the session is committed, so that a response is never
// sent for changes that were not stored. Flush, Hijack, a 101 status or a
// body that outgrows the buffer limit commit the session early and switch
// to streaming. It notes when the response headers have gone out, after
// which a new session id can no longer be sent in a cookie, and keeps the
// optional interfaces reachable: Flush, FlushError, Hijack and ReadFrom
// directly, the others through Unwrap (http.ResponseController).
//
// Like any http.ResponseWriter it is used by one goroutine at a time; only
// headersSent may be called from others (by the Session).
type responseWriter struct {
	http.ResponseWriter
	s     *Session
	r     *http.Request // the request, for the error answer
	limit int           // the body bytes buffering holds at most
	state int
	code  int // the status held back; 0: none written yet
	buf   bytes.Buffer
	saved http.Header // the headers from before the handler, restored when its response is dropped
	err   error       // why the response failed (wraps ErrNotStored)
	sent  atomic.Bool // the response headers may have gone out
}

// newResponseWriter returns the writer for s's handler over w, buffering
// unless buffered is false.
func newResponseWriter(w http.ResponseWriter, r *http.Request, s *Session, buffered bool, limit int) *responseWriter {
	rw := &responseWriter{ResponseWriter: w, s: s, r: r, limit: limit, state: streaming}
	if h := w.Header(); len(h) > 0 {
		rw.saved = h.Clone()
	}
	if buffered {
		rw.state = buffering
	}
	return rw
}

// WriteHeader implements http.ResponseWriter. While buffering, the status
// is held back; informational statuses (1xx) other than 101 go out at
// once, and 101 Switching Protocols commits the session early.
func (w *responseWriter) WriteHeader(code int) {
	switch w.state {
	case failed:
		return
	case buffering:
		switch {
		case code < 100 || code > 999:
			// Invalid: let the underlying writer refuse it as it would
			// without the middleware (net/http panics).
		case code == http.StatusSwitchingProtocols:
			if w.code == 0 {
				w.code = code
			}
			_ = w.stream()
			return
		case code < 200:
			w.ResponseWriter.WriteHeader(code)
			return
		default:
			if w.code == 0 {
				w.code = code
			}
			return
		}
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.sent.Store(true)
		w.s.keepIDInRedirect(w.ResponseWriter.Header(), code)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter. While buffering, b is held back;
// a write that would make the buffered body exceed the buffer limit
// commits the session early and sends the response on. After a failed
// commit it returns an error wrapping ErrNotStored.
func (w *responseWriter) Write(b []byte) (int, error) {
	switch w.state {
	case failed:
		return 0, w.err
	case buffering:
		if w.code == 0 {
			w.code = http.StatusOK
		}
		if w.buf.Len()+len(b) <= w.limit {
			return w.buf.Write(b)
		}
		if err := w.stream(); err != nil {
			return 0, err
		}
	}
	w.sent.Store(true)
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's fast path (sendfile) available
// once the response streams. While buffering it reads up to the buffer
// limit; a longer body commits the session early and is copied on.
func (w *responseWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	switch w.state {
	case failed:
		return 0, w.err
	case buffering:
		if w.code == 0 {
			w.code = http.StatusOK
		}
		room := int64(w.limit - w.buf.Len())
		m, err := w.buf.ReadFrom(io.LimitReader(r, room+1))
		if err != nil || m <= room {
			return m, err
		}
		n = m
		if err := w.stream(); err != nil {
			return n, err
		}
	}
	w.sent.Store(true)
	m, err := io.Copy(w.ResponseWriter, r)
	return n + m, err
}

// FlushError commits the session early (when buffering), sends what has
// been written so far and flushes. It returns the commit's error
// (wrapping ErrNotStored) if the session could not be stored, then the
// error answer has gone out instead; http.ErrNotSupported when the
// underlying writer cannot flush. http.ResponseController.Flush calls it.
func (w *responseWriter) FlushError() error {
	if err := w.stream(); err != nil {
		return err
	}
	w.sent.Store(true)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher as FlushError, without its error.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// Hijack implements http.Hijacker. It commits the session first (when
// buffering) and sends what has been written so far. It fails with the
// commit's error, or http.ErrNotSupported when the underlying writer
// cannot be hijacked.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if err := w.stream(); err != nil {
		return nil, nil, err
	}
	w.sent.Store(true)
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController. Code
// that writes to it directly bypasses the buffering.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headersSent reports whether the response headers may have gone out.
func (w *responseWriter) headersSent() bool { return w.sent.Load() }

// stream ends buffering. It ends the session's part in the request, as
// Session.Commit does, and decides the held-back response's fate: it goes
// out if the session's changes were stored, else it is dropped and the
// error answered instead (see Session.notStored). Afterwards the writer
// streams, or has failed. When not buffering it only reports a failure.
func (w *responseWriter) stream() error {
	switch w.state {
	case failed:
		return w.err
	case streaming:
		if err := w.s.loadError(); err != nil && !w.sent.Load() {
			w.fail(err)
			return err
		}
		return nil
	}
	_ = w.s.finish(w.s.ctx, false) // logged and counted by finish
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	if err := w.s.notStored(code); err != nil {
		w.fail(err)
		return w.err
	}
	w.state = streaming
	w.sent.Store(true)
	if h := w.ResponseWriter.Header(); setsCookie(h, w.s.m.cookieCfg.Name) {
		noSharedCache(h) // again: the handler may have set Cache-Control since
	}
	w.s.keepIDInRedirect(w.ResponseWriter.Header(), code)
	if w.code != 0 {
		w.ResponseWriter.WriteHeader(w.code)
	}
	if w.buf.Len() > 0 {
		// A write error means the client is gone; the handler's next
		// write, if any, sees it.
		_, _ = w.ResponseWriter.Write(w.buf.Bytes())
	}
	w.buf = bytes.Buffer{}
	return nil
}

// fail drops the held-back response, headers included, and answers err;
// a client that left while the session was loading gets nothing.
func (w *responseWriter) fail(err error) {
	w.state = failed
	w.err = err
	w.discard()
	w.sent.Store(true)
	if errors.Is(err, context.Canceled) && w.r.Context().Err() != nil {
		return
	}
	w.s.m.answerFailed(w.ResponseWriter, w.r, err)
}

// setBuffered turns buffering on or off for a request whose mode was
// decided (again) before its handler wrote anything; a response already
// begun keeps its state.
func (w *responseWriter) setBuffered(on bool) {
	switch {
	case on && w.state == streaming && !w.sent.Load():
		w.state = buffering
	case !on && w.state == buffering && w.code == 0 && w.buf.Len() == 0:
		w.state = streaming
	}
}

// discard drops the held-back response: its status, its body and the
// headers the handler set (the new session's cookie among them). The
// headers set before the middleware ran are kept.
func (w *responseWriter) discard() {
	if w.state == streaming {
		return
	}
	w.code = 0
	w.buf = bytes.Buffer{}
	h := w.ResponseWriter.Header()
	clear(h)
	for k, v := range w.saved {
		h[k] = v
	}
}
