package readme

import (
	"bufio"
	"fmt"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// block is one ```go block of a Markdown file.
type block struct {
	line int // the line of its opening fence, 1-based
	code string
}

// goBlocks returns the ```go blocks of markdown.
func goBlocks(markdown string) []block {
	var blocks []block
	var cur *block
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(markdown))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```go":
			cur = &block{line: n}
			b.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.code = b.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return blocks
}

// stdImports are the standard packages a fragment may use without
// importing them.
var stdImports = map[string]string{
	"context": "context", "errors": "errors", "fmt": "fmt", "http": "net/http",
	"log": "log", "os": "os", "slog": "log/slog", "strings": "strings", "time": "time",
}

// moduleImports maps the name of each package of the module rooted at root
// (outside internal/, testdata and other modules) to its import path.
func moduleImports(t *testing.T, root, module string) map[string]string {
	t.Helper()
	imports := make(map[string]string)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		name := d.Name()
		if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "internal") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && rel != "." {
			return filepath.SkipDir // another module (stress)
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil || pkg.Name == "main" {
			return nil
		}
		imports[pkg.Name] = module + "/" + filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return imports
}

// qualified matches a use of a package: name followed by a dot and an
// exported identifier.
var qualified = regexp.MustCompile(`\b([a-z][a-z0-9]*)\.[A-Z]`)

// program returns code as a Go file: as it is when it has a package
// clause, else as the body of main with the imports it uses (the module's
// packages and common standard ones), the way a reader would paste it.
func program(code string, imports map[string]string) string {
	if regexp.MustCompile(`(?m)^package \w+`).MatchString(code) {
		return code
	}
	used := make(map[string]bool)
	for _, m := range qualified.FindAllStringSubmatch(code, -1) {
		if path, ok := imports[m[1]]; ok {
			used[path] = true
		} else if path, ok := stdImports[m[1]]; ok {
			used[path] = true
		}
	}
	paths := make([]string, 0, len(used))
	for p := range used {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	b.WriteString("package main\n\nimport (\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "\t%q\n", p)
	}
	b.WriteString(")\n\nfunc main() {\n")
	b.WriteString(code)
	b.WriteString("}\n")
	return b.String()
}

// check writes each block as its own package under a temporary directory
// inside the module (so that the module's packages resolve) and runs
// "go vet" (which type-checks, and stops at a package's first error) or
// "go build" (which reports every compile error) on them all. It returns
// the command's output and whether it succeeded.
func check(t *testing.T, cmd string, blocks []block) (string, bool) {
	t.Helper()
	root, module := moduleRoot(t)
	imports := moduleImports(t, root, module)
	// "_" keeps the directory out of ./... for anything running meanwhile.
	dir, err := os.MkdirTemp(".", "_readme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for _, b := range blocks {
		pkg := filepath.Join(dir, fmt.Sprintf("line%d", b.line))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(program(b.code, imports)), 0o644); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(pkg))
	}
	args := append([]string{cmd}, pkgs...)
	if cmd == "build" && len(pkgs) == 1 {
		args = []string{"build", "-o", os.DevNull, pkgs[0]}
	}
	out, err := exec.Command(goTool(), args...).CombinedOutput()
	return string(out), err == nil
}

// moduleRoot returns the directory of the root module and its path.
func moduleRoot(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^module\s+(\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no module line in go.mod")
	}
	return root, string(m[1])
}

// goTool returns the go command of the toolchain running the test.
func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}

// TestREADMECompiles type-checks and vets every Go block of README.md: a
// complete file as it is, a fragment as the body of main with the imports
// it uses. The README must show at least a quickstart, a handler and a
// setup for several servers.
func TestREADMECompiles(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goBlocks(string(readme))
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d Go blocks, want at least 3 (quickstart, handler, several servers)", len(blocks))
	}
	for _, want := range []string{"memstore.New(", "middleware.FromContext(", "memcached.New("} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("README.md's code does not show %s", want)
		}
	}
	if out, ok := check(t, "vet", blocks); !ok {
		t.Fatalf("README.md's Go blocks do not compile (a block's directory is named after the line of its fence):\n%s", out)
	}
}

// oldSample is the README's only sample before the quickstart: the one a
// new user reported as not compiling.
const oldSample = "# sessionlock\n\n```go\n" + `store := memstore.New(memstore.Config{})           // or memcached.New(...), tiered.New(...)
p, err := provider.New(store, provider.Config{})   // 20 min sessions, 10 s leases
m, err := middleware.New(middleware.Config{Provider: p})
mux := http.NewServeMux()
mux.Handle("POST /cart", m.WithMode(middleware.Exclusive, cartHandler))
mux.Handle("GET /cart", m.WithMode(middleware.ReadOnly, showCart))
http.ListenAndServe(":8080", mux)
` + "```\n"

// TestREADMECheckFailsOnTheOldSample shows the check catches what the
// user ran into: the old sample fails with err declared and not used (and
// handlers it never defined).
func TestREADMECheckFailsOnTheOldSample(t *testing.T) {
	blocks := goBlocks(oldSample)
	if len(blocks) != 1 {
		t.Fatalf("found %d blocks in the old sample, want 1", len(blocks))
	}
	out, ok := check(t, "build", blocks)
	if ok {
		t.Fatal("the old README sample passed the check; it does not compile")
	}
	for _, want := range []string{"declared and not used: err", "undefined: cartHandler"} {
		if !strings.Contains(out, want) {
			t.Errorf("go vet output lacks %q:\n%s", want, out)
		}
	}
}
