package readme

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// packageDirs maps the package names docs/configuration.md uses to their
// directories.
var packageDirs = map[string]string{
	"provider": "provider", "lock": "lock", "middleware": "middleware",
	"memstore": "store/memstore", "memcached": "store/memcached", "tiered": "store/tiered",
	"sqlstore": "store/sqlstore", "couchbase": "store/couchbase", "redis": "store/redis",
}

// structFields returns the field names of every struct type declared in
// the non-test Go files of dir, by type name.
func structFields(t *testing.T, dir string) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	types := map[string]map[string]bool{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			fields := map[string]bool{}
			for _, f := range st.Fields.List {
				for _, name := range f.Names {
					fields[name.Name] = true
				}
			}
			types[ts.Name.Name] = fields
			return true
		})
	}
	return types
}

// TestConfigurationTableNamesRealFields: every field docs/configuration.md's
// table names exists, so that a renamed or removed field fails here until
// the table follows.
func TestConfigurationTableNamesRealFields(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	qualified := regexp.MustCompile("^`([a-z]+)\\.([A-Z][A-Za-z]*)\\.([A-Z][A-Za-z]*)[^`]*`")
	bare := regexp.MustCompile("`([A-Z][A-Za-z]*)`")
	cache := map[string]map[string]map[string]bool{}
	rows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		first := strings.TrimSpace(cells[1])
		m := qualified.FindStringSubmatch(first)
		if m == nil {
			t.Errorf("configuration.md: %q does not start with pkg.Type.Field", first)
			continue
		}
		rows++
		pkg, typ := m[1], m[2]
		dir, ok := packageDirs[pkg]
		if !ok {
			t.Errorf("configuration.md: unknown package %q", pkg)
			continue
		}
		if cache[dir] == nil {
			cache[dir] = structFields(t, filepath.Join(root, dir))
		}
		fields, ok := cache[dir][typ]
		if !ok {
			t.Errorf("configuration.md: %s.%s is not a struct type", pkg, typ)
			continue
		}
		names := []string{m[3]}
		for _, b := range bare.FindAllStringSubmatch(first[len(m[0]):], -1) {
			names = append(names, b[1])
		}
		for _, name := range names {
			if !fields[name] {
				t.Errorf("configuration.md: %s.%s has no field %s", pkg, typ, name)
			}
		}
	}
	if rows < 20 {
		t.Fatalf("configuration.md: only %d table rows found", rows)
	}
}
