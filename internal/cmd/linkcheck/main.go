// Command linkcheck fails when a Markdown file of the repository links to
// a file that does not exist, or to a heading its target does not have:
// every link of the docs must resolve inside the repository. `make check`
// runs it.
//
// Usage:
//
//	go run ./internal/cmd/linkcheck [DIR]
//
// It reads every *.md below DIR (default .), skipping .git, bin and
// testdata, and checks each inline link [text](target) whose target is
// relative (not http:, https:, mailto:), with or without a #fragment, and
// each bare #fragment against the file's own headings. Headings become
// fragments as GitHub makes them: lower case, spaces to hyphens, other
// punctuation dropped.
package main

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	bad, err := check(dir, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "linkcheck:", err)
		os.Exit(2)
	}
	if bad > 0 {
		fmt.Fprintf(os.Stderr, "linkcheck: %d broken links\n", bad)
		os.Exit(1)
	}
}

var link = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)

// check reports every broken link below dir on w and returns their count.
func check(dir string, w io.Writer) (int, error) {
	anchors := map[string]map[string]bool{} // file → its headings' fragments
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	headings := func(p string) (map[string]bool, error) {
		if a, ok := anchors[p]; ok {
			return a, nil
		}
		a, err := fragments(p)
		anchors[p] = a
		return a, err
	}
	bad := 0
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			return bad, err
		}
		inCode := false
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				inCode = !inCode
				continue
			}
			if inCode {
				continue
			}
			for _, m := range link.FindAllStringSubmatch(stripCode(l), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				dest := f
				if path != "" {
					dest = filepath.Join(filepath.Dir(f), path)
					if _, err := os.Stat(dest); err != nil {
						fmt.Fprintf(w, "%s:%d: %s: no such file\n", f, i+1, target)
						bad++
						continue
					}
				}
				if frag == "" || !strings.HasSuffix(dest, ".md") {
					continue
				}
				a, err := headings(dest)
				if err != nil {
					return bad, err
				}
				if !a[frag] {
					fmt.Fprintf(w, "%s:%d: %s: %s has no heading #%s\n", f, i+1, target, dest, frag)
					bad++
				}
			}
		}
	}
	return bad, nil
}

// stripCode removes `code spans`: a link inside one is text.
func stripCode(l string) string {
	var b strings.Builder
	in := false
	for _, r := range l {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fragments lists a Markdown file's headings as GitHub's fragments.
func fragments(p string) (map[string]bool, error) {
	lines, err := readLines(p)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	seen := map[string]int{}
	inCode := false
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			inCode = !inCode
			continue
		}
		if inCode || !strings.HasPrefix(l, "#") {
			continue
		}
		s := slug(strings.TrimLeft(l, "#"))
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out, nil
}

// slug is GitHub's fragment of a heading.
func slug(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out, sc.Err()
}
