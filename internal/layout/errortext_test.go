package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoErrorTextMatching holds the rule that the product matches errors
// by type and sentinel (errors.Is/As), never by their text: in the
// module's non-test code no call's .Error() result is compared, switched
// on, or handed to a strings or regexp matcher. Tests may read an error's
// text: it is what the operator sees.
func TestNoErrorTextMatching(t *testing.T) {
	files := walkGo(t, false, func(fset *token.FileSet, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (isErrorCall(n.X) || isErrorCall(n.Y)) {
					t.Errorf("%s: an error's text compared with %s: match it with errors.Is or errors.As", fset.Position(n.Pos()), n.Op)
				}
			case *ast.SwitchStmt:
				if isErrorCall(n.Tag) {
					t.Errorf("%s: a switch on an error's text: match it with errors.Is or errors.As", fset.Position(n.Pos()))
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				pkg, ok := sel.X.(*ast.Ident)
				if !(ok && (pkg.Name == "strings" || pkg.Name == "bytes") && matchers[sel.Sel.Name]) && !strings.HasPrefix(sel.Sel.Name, "Match") && !strings.HasPrefix(sel.Sel.Name, "Find") {
					return true
				}
				for _, a := range n.Args {
					if isErrorCall(a) {
						t.Errorf("%s: an error's text parsed with %s: match it with errors.Is or errors.As", fset.Position(n.Pos()), sel.Sel.Name)
					}
				}
			}
			return true
		})
	})
	if files < 100 {
		t.Fatalf("read %d Go files: not the module's tree", files)
	}
}

// matchers are the strings and bytes functions that look for something in
// a text (editing one for display, as TrimPrefix or ReplaceAll, is not
// matching it).
var matchers = map[string]bool{
	"Contains": true, "ContainsAny": true, "ContainsRune": true, "ContainsFunc": true,
	"HasPrefix": true, "HasSuffix": true, "EqualFold": true, "Compare": true, "Count": true,
	"Index": true, "IndexAny": true, "IndexByte": true, "IndexRune": true, "IndexFunc": true,
	"LastIndex": true, "LastIndexAny": true, "LastIndexByte": true, "LastIndexFunc": true,
	"Cut": true, "CutPrefix": true, "CutSuffix": true, "Split": true, "SplitN": true, "Fields": true,
}

// isErrorCall reports whether e is a call x.Error() with no arguments.
func isErrorCall(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok || len(c.Args) != 0 {
		return false
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "Error"
}

// walkGo parses every Go file of the module (its test files, or the
// others), outside hidden directories, testdata and bin, and hands each to
// fn; it returns how many it read.
func walkGo(t *testing.T, tests bool, fn func(*token.FileSet, *ast.File)) int {
	t.Helper()
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") != tests {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		files++
		fn(fset, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
