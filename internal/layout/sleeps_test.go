package layout

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"
)

// TestSleepsInTests holds the tests' rule on time.Sleep: a test waits for
// what it expects through internal/eventually, or on a barrier, never by
// sleeping and then asserting; so every time.Sleep in a test file is
// either inside a testing/synctest bubble (synctest.Test's function: it
// moves the fake clock), or says on its line or the two above why it is
// there: "the stimulus" (the test's input is a delay: a slow scanner, a
// companion a second later, a benchmark's pacing) or "fake time" (a helper
// called inside a bubble).
func TestSleepsInTests(t *testing.T) {
	counts := map[string]int{}
	walkGo(t, true, func(fset *token.FileSet, f *ast.File) {
		if f.Name.Name == "layout" {
			return // this file's own words
		}
		said := map[int]string{} // line → its comments' text
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				said[fset.Position(c.Pos()).Line] += strings.ToLower(c.Text)
			}
		}
		var stack []ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			stack = append(stack, n)
			if !isCall(n, "time", "Sleep") {
				return true
			}
			pos := fset.Position(n.Pos())
			switch {
			case inBubble(stack):
				counts["in a synctest bubble"]++
			case saysWhy(said, pos.Line, "stimulus"):
				counts["the stimulus"]++
			case saysWhy(said, pos.Line, "fake time"):
				counts["fake time, in a helper"]++
			default:
				t.Errorf("%s: time.Sleep outside a synctest bubble, with no comment saying it is the stimulus: wait with internal/eventually or on a barrier", pos)
			}
			return true
		})
	})
	t.Logf("time.Sleep in tests: %v", counts)
}

// inBubble reports whether the innermost node of stack lies inside a
// function literal handed to synctest.Test.
func inBubble(stack []ast.Node) bool {
	for i := len(stack) - 1; i > 0; i-- {
		lit, ok := stack[i].(*ast.FuncLit)
		if !ok {
			continue
		}
		if call, ok := stack[i-1].(*ast.CallExpr); ok && isCall(call, "synctest", "Test") {
			for _, a := range call.Args {
				if a == lit {
					return true
				}
			}
		}
	}
	return false
}

// saysWhy reports whether a comment on line or the two lines above it
// contains why.
func saysWhy(said map[int]string, line int, why string) bool {
	for l := line - 2; l <= line; l++ {
		if strings.Contains(said[l], why) {
			return true
		}
	}
	return false
}

// isCall reports whether n is a call pkg.name(…).
func isCall(n ast.Node, pkg, name string) bool {
	c, ok := n.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}
