package session_test

import (
	"fmt"

	"github.com/sessionlock/sessionlock/session"
)

func ExampleGet() {
	type cart struct {
		Items []string
	}
	v := session.NewValues(nil) // JSON values
	if err := v.Set("cart", cart{Items: []string{"tea", "milk"}}); err != nil {
		fmt.Println(err)
		return
	}
	c, ok, err := session.Get[cart](v, "cart")
	fmt.Println(c.Items, ok, err)
	n, ok, err := session.Get[int](v, "visits")
	fmt.Println(n, ok, err)
	// Output:
	// [tea milk] true <nil>
	// 0 false <nil>
}

func ExamplePop() {
	v := session.NewValues(nil)
	_ = v.Set("flash", "Saved.")
	msg, ok, _ := session.Pop[string](v, "flash")
	fmt.Println(msg, ok)
	msg, ok, _ = session.Pop[string](v, "flash")
	fmt.Printf("%q %v\n", msg, ok)
	// Output:
	// Saved. true
	// "" false
}

func ExampleValues_Merge() {
	stored := session.NewValues(nil)
	_ = stored.Set("a", 1)
	_ = stored.Set("b", 1)
	stored.MarkClean()

	// Two lock-free requests read the same session and change different keys.
	r1, r2 := stored.Clone(), stored.Clone()
	_ = r1.Set("a", 2)
	r2.Delete("b")

	stored.Merge(r1)
	stored.Merge(r2)
	a, _, _ := session.Get[int](stored, "a")
	fmt.Println(stored.Keys(), a)
	// Output: [a] 2
}

func ExampleNewID() {
	id, err := session.NewID()
	fmt.Println(len(id), session.ValidID(id), err)
	fmt.Println(session.ValidID("../../etc/passwd"))
	// Output:
	// 32 true <nil>
	// false
}
