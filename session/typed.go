package session

// Typed access: one name, Get[T] (and Pop[T]), for everything that holds
// session values: *Values here, and the request's *middleware.Session.

// A Getter decodes the value stored under key into dst, a non-nil pointer,
// and reports whether key was present. *Values and *middleware.Session are
// Getters.
type Getter interface {
	Get(key string, dst any) (bool, error)
}

// A Popper decodes the value stored under key into dst, like a Getter, and
// deletes key. *Values and *middleware.Session are Poppers.
type Popper interface {
	Pop(key string, dst any) (bool, error)
}

// Get returns the value stored under key in g decoded as a T, and whether
// key was present. An absent key returns T's zero value, false and a nil
// error. g is a *Values or a request's *middleware.Session:
//
//	n, ok, err := session.Get[int](values, "visits")
//	user, ok, err := session.Get[User](middleware.FromContext(ctx), "user")
func Get[T any](g Getter, key string) (T, bool, error) {
	var t T
	ok, err := g.Get(key, &t)
	if err != nil {
		var zero T
		return zero, ok, err
	}
	return t, ok, nil
}

// Pop returns the value stored under key in p decoded as a T, and whether
// key was present, and deletes key: a flash message, shown once. An absent
// key returns T's zero value, false and a nil error. See Values.Pop and
// middleware's Session.Pop for when the deletion happens.
func Pop[T any](p Popper, key string) (T, bool, error) {
	var t T
	ok, err := p.Pop(key, &t)
	if err != nil {
		var zero T
		return zero, ok, err
	}
	return t, ok, nil
}

// Pop decodes the value stored under key into dst, a non-nil pointer, as
// Get does, and then deletes key, as Delete does (an absent key is not
// deleted: nothing changes). A value that does not decode into dst is
// returned as an error and not deleted.
func (v *Values) Pop(key string, dst any) (bool, error) {
	ok, err := v.Get(key, dst)
	if err != nil || !ok {
		return ok, err
	}
	v.Delete(key)
	return true, nil
}

// Encoded returns the stored bytes of key's value, as the codec produced
// them, and whether key was present. The slice must not be modified.
// Stores use it to compare a value with what a request read (a lock-free
// Pop deletes a key only if it still holds the value the request popped).
func (v *Values) Encoded(key string) ([]byte, bool) {
	b, ok := v.items[key]
	return b, ok
}
