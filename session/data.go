package session

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ActionFlags are ASP.NET's SessionStateActions: what a request must do with
// a session item besides using it.
type ActionFlags uint8

// InitializeItem marks an item created uninitialized (by
// CreateUninitializedItem). The provider returns it to exactly one request,
// which then initializes the session, and clears it atomically.
const InitializeItem ActionFlags = 1

// String returns the flags' names joined by "|", "None" for no flags.
func (f ActionFlags) String() string {
	if f == 0 {
		return "None"
	}
	var names []string
	if f&InitializeItem != 0 {
		names = append(names, "InitializeItem")
		f &^= InitializeItem
	}
	if f != 0 {
		names = append(names, fmt.Sprintf("0x%02x", uint8(f)))
	}
	return strings.Join(names, "|")
}

// Timeout bounds: a session's timeout must lie in [MinTimeout, MaxTimeout].
const (
	MinTimeout = time.Second
	MaxTimeout = 365 * 24 * time.Hour
)

// ErrInvalidTimeout is wrapped when a timeout is outside
// [MinTimeout, MaxTimeout].
var ErrInvalidTimeout = errors.New("session: invalid timeout")

// CheckTimeout returns nil if t lies in [MinTimeout, MaxTimeout], otherwise an
// error wrapping ErrInvalidTimeout.
func CheckTimeout(t time.Duration) error {
	if t < MinTimeout || t > MaxTimeout {
		return fmt.Errorf("%w: %v is outside [%v, %v]", ErrInvalidTimeout, t, MinTimeout, MaxTimeout)
	}
	return nil
}

// Data is what a handler works with: the session's values and its own
// timeout, ASP.NET's Session.Timeout (like SessionStateStoreData). The
// provider stores the timeout with the session and uses it as the session's
// time to live after every operation that keeps it alive.
//
// Data is not safe for concurrent use, like Values.
type Data struct {
	// Values are the session's values. NewData never leaves it nil.
	Values *Values

	timeout        time.Duration
	timeoutChanged bool
}

// NewData returns Data holding values (new empty Values with the default
// codec if nil) and timeout. NewData does not check timeout: the provider
// passes one it validated (see CheckTimeout).
func NewData(values *Values, timeout time.Duration) *Data {
	if values == nil {
		values = NewValues(nil)
	}
	return &Data{Values: values, timeout: timeout}
}

// Timeout returns the session's timeout.
func (d *Data) Timeout() time.Duration { return d.timeout }

// SetTimeout changes the session's timeout, which the provider stores when
// the request ends. It returns an error wrapping ErrInvalidTimeout, and
// changes nothing, if t is outside [MinTimeout, MaxTimeout]. Setting the
// current value is not a change.
func (d *Data) SetTimeout(t time.Duration) error {
	if err := CheckTimeout(t); err != nil {
		return err
	}
	if t != d.timeout {
		d.timeout = t
		d.timeoutChanged = true
	}
	return nil
}

// TimeoutChanged reports whether SetTimeout changed the timeout since NewData
// or the last MarkClean.
func (d *Data) TimeoutChanged() bool { return d.timeoutChanged }

// Dirty reports whether the session must be written back: its values changed
// or its timeout did.
func (d *Data) Dirty() bool {
	return d.timeoutChanged || (d.Values != nil && d.Values.Dirty())
}

// MarkClean forgets the recorded changes of the values and the timeout, as
// after the session was stored.
func (d *Data) MarkClean() {
	d.timeoutChanged = false
	if d.Values != nil {
		d.Values.MarkClean()
	}
}
