package depcheck

import (
	"errors"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// banned maps an import path (or a path prefix ending in "/") to the reason
// it is refused in non-test code.
var banned = []struct {
	path   string
	reason string
}{
	{"math/rand", "use crypto/rand: codes, tokens and secrets must be unpredictable"},
	{"math/rand/", "use crypto/rand: codes, tokens and secrets must be unpredictable"},
	{"gopkg.in/yaml.v3", "archived; use go.yaml.in/yaml/v3"},
	{"github.com/gorilla/csrf", "open advisory; use http.CrossOriginProtection"},
	{"github.com/gorilla/csrf/", "open advisory; use http.CrossOriginProtection"},
}

func bannedReason(importPath string) (string, bool) {
	for _, b := range banned {
		if importPath == b.path || strings.HasSuffix(b.path, "/") && strings.HasPrefix(importPath, b.path) {
			return b.reason, true
		}
	}
	return "", false
}

// skipDir reports whether the go tool would ignore a directory: testdata,
// vendored code, and names starting with "." or "_" (which covers .git).
func skipDir(name string) bool {
	return name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

type violation struct {
	file, importPath, reason string
	line                     int
}

// scan parses the imports of every non-test .go file under root. It returns
// the banned imports found and the files it parsed.
func scan(root string) (found []violation, files []string, err error) {
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if reason, bad := bannedReason(p); bad {
				found = append(found, violation{filepath.ToSlash(rel), p, reason, fset.Position(imp.Pos()).Line})
			}
		}
		return nil
	})
	return found, files, err
}

// moduleRoot walks up from the working directory (this package's directory
// under go test) to the directory holding go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

func TestNoBannedImports(t *testing.T) {
	root := moduleRoot(t)
	found, files, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	// Guard against a vacuous pass from scanning the wrong tree.
	if !slices.Contains(files, "internal/depcheck/doc.go") {
		t.Fatalf("scanned %d files under %s, but not internal/depcheck/doc.go", len(files), root)
	}
	for _, v := range found {
		t.Errorf("%s:%d imports %q: %s", v.file, v.line, v.importPath, v.reason)
	}
}

// TestScanFindsBannedImports checks the checker on a small tree: banned
// imports in non-test files are reported (also renamed, blank and grouped),
// while test files, testdata, vendor and dot-directories are skipped.
func TestScanFindsBannedImports(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":                       "module example.com/m\n",
		"ok.go":                        "package m\n\nimport \"crypto/rand\"\n\nvar _ = rand.Reader\n",
		"a/rand.go":                    "package a\n\nimport \"math/rand\"\n",
		"a/v2.go":                      "package a\n\nimport (\n\t\"fmt\"\n\tr \"math/rand/v2\"\n)\n",
		"b/yaml.go":                    "package b\n\nimport _ \"gopkg.in/yaml.v3\"\n",
		"b/csrf.go":                    "//go:build ignore\n\npackage b\n\nimport \"github.com/gorilla/csrf\"\n",
		"c/fine.go":                    "package c\n\nimport (\n\t\"go.yaml.in/yaml/v3\"\n\t\"math\"\n\t\"math/randx\"\n)\n",
		"c/fine_test.go":               "package c\n\nimport \"math/rand\"\n",
		"c/testdata/bad.go":            "package bad\n\nimport \"math/rand\"\n",
		"vendor/x/bad.go":              "package x\n\nimport \"math/rand\"\n",
		".hidden/bad.go":               "package x\n\nimport \"math/rand\"\n",
		"_old/bad.go":                  "package x\n\nimport \"math/rand\"\n",
		"d/notgo.txt":                  "import \"math/rand\"\n",
		"d/comment.go":                 "package d\n\n// import \"math/rand\"\nimport \"strings\"\n",
		"d/string.go":                  "package d\n\nvar s = `import \"math/rand\"`\n",
		"e/multiline.go":               "package e\n\nimport (\n\t\"errors\"\n)\n\nimport \"math/rand\"\n",
		"e/subpackage_of_csrf/x.go":    "package x\n\nimport \"github.com/gorilla/csrf/internal\"\n",
		"e/prefix_lookalike/x.go":      "package x\n\nimport \"github.com/gorilla/csrfx\"\n",
		"e/prefix_lookalike/yaml2.go":  "package x\n\nimport \"gopkg.in/yaml.v2\"\n",
		"e/prefix_lookalike/yaml3x.go": "package x\n\nimport \"gopkg.in/yaml.v3x\"\n",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	found, _, err := scan(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range found {
		got = append(got, v.file+":"+strconv.Itoa(v.line)+" "+v.importPath)
	}
	slices.Sort(got)
	want := []string{
		"a/rand.go:3 math/rand",
		"a/v2.go:5 math/rand/v2",
		"b/csrf.go:5 github.com/gorilla/csrf",
		"b/yaml.go:3 gopkg.in/yaml.v3",
		"e/multiline.go:7 math/rand",
		"e/subpackage_of_csrf/x.go:3 github.com/gorilla/csrf/internal",
	}
	if !slices.Equal(got, want) {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestScanReportsUnparsableFiles(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "broken.go"), []byte("package broken\n\nimport math/rand\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := scan(root); err == nil {
		t.Error("a file whose imports do not parse was passed")
	}
}
