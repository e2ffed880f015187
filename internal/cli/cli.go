// Package cli is the one command-line convention of gateagent and issuer:
// a tree of commands, each with its own usage, flags and help.
//
//   - `-h` or `--help` anywhere among a command's arguments (before `--`), or
//     `help COMMAND…`, prints that command's help on stdout and exits 0;
//   - the root command alone, or with `--version`, prints its usage or its
//     version and exits 0;
//   - flags are written GNU-style (`--flag VALUE` or `--flag=VALUE`) in all
//     help text and may come before or after the positional arguments;
//   - a usage error (an unknown command or flag, a missing or extra
//     argument) prints what was wrong and the command's usage on stderr and
//     exits 64 (EX_USAGE), never the status a check or a run uses.
package cli

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit statuses shared by the commands, as sysexits(3) names them where
// it does.
const (
	ExitOK       = 0
	ExitFailure  = 1  // the command ran and failed
	ExitUsage    = 64 // EX_USAGE: the command line is wrong
	ExitTempFail = 75 // EX_TEMPFAIL: try again later
	ExitConfig   = 78 // EX_CONFIG: a config file or the machine is wrong
)

// Command is one command of a tree.
type Command struct {
	Name    string
	Args    string // the positional arguments in the usage line ("CERTID")
	Summary string // one line, in the parent's list of commands
	Help    string // what the command does, after the usage line
	// Flags declares the command's flags on fs.
	Flags func(fs *flag.FlagSet)
	// NArgs bounds the positional arguments: [min, max]; max < 0 means
	// no limit. The zero value takes none.
	NArgs [2]int
	// Run runs the command with its flags parsed. A command with
	// Commands and no Run only dispatches.
	Run      func(c *Context) int
	Commands []*Command
	// Exits documents the exit statuses, shown in help; default "0
	// done, 1 failed, 64 usage error".
	Exits string
}

// Context is what a running command gets.
type Context struct {
	Stdout, Stderr io.Writer
	Args           []string // positional arguments
	Flags          *flag.FlagSet
	path           string // "gateagent diag relay"
	cmd            *Command
}

// Usagef reports a usage error: what was wrong, then the command's usage,
// on stderr. It returns ExitUsage.
func (c *Context) Usagef(format string, a ...any) int {
	fmt.Fprintf(c.Stderr, "%s: %s\n\n", c.path, fmt.Sprintf(format, a...))
	writeUsage(c.Stderr, c.path, c.cmd, c.Flags)
	return ExitUsage
}

// Fail prints err, prefixed with the command's path, on stderr and returns
// ExitFailure.
func (c *Context) Fail(err error) int {
	fmt.Fprintf(c.Stderr, "%s: %v\n", c.path, err)
	return ExitFailure
}

// Path is the command's full name ("gateagent diag relay").
func (c *Context) Path() string { return c.path }

// Main runs the command tree root on args (without the program name) and
// returns the exit status. version is what --version prints.
func Main(root *Command, version string, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, version)
		return ExitOK
	}
	return run(root, root.Name, args, stdout, stderr)
}

// Run runs cmd, whose full name is path ("gateagent diag"), on args.
func Run(cmd *Command, path string, args []string, stdout, stderr io.Writer) int {
	return run(cmd, path, args, stdout, stderr)
}

// run runs cmd on args. A command with subcommands dispatches to the one
// its first argument names; one that also has a Run runs itself when the
// first argument is a flag or there is none.
func run(cmd *Command, path string, args []string, stdout, stderr io.Writer) int {
	fs := flagSet(cmd, path, stderr)
	if len(cmd.Commands) > 0 && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if args[0] == "help" {
			return help(cmd, path, args[1:], stdout, stderr)
		}
		if sub := find(cmd, args[0]); sub != nil {
			return run(sub, path+" "+args[0], args[1:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n", path, args[0])
		writeUsage(stderr, path, cmd, fs)
		return ExitUsage
	}
	if wantsHelp(args) || (cmd.Run == nil && len(args) == 0) {
		writeUsage(stdout, path, cmd, fs)
		return ExitOK
	}
	if cmd.Run == nil {
		fmt.Fprintf(stderr, "%s: give a command\n\n", path)
		writeUsage(stderr, path, cmd, fs)
		return ExitUsage
	}
	pos, err := parse(fs, args)
	c := &Context{Stdout: stdout, Stderr: stderr, Args: pos, Flags: fs, path: path, cmd: cmd}
	if err != nil {
		return c.Usagef("%v", err)
	}
	min, max := cmd.NArgs[0], cmd.NArgs[1]
	switch {
	case len(pos) < min:
		return c.Usagef("missing arguments: want %s", cmd.Args)
	case max >= 0 && len(pos) > max:
		return c.Usagef("unexpected argument %q", pos[max])
	}
	return cmd.Run(c)
}

// help is `help COMMAND…`.
func help(cmd *Command, path string, names []string, stdout, stderr io.Writer) int {
	for _, n := range names {
		sub := find(cmd, n)
		if sub == nil {
			fmt.Fprintf(stderr, "%s help: unknown command %q\n\n", path, n)
			writeUsage(stderr, path, cmd, flagSet(cmd, path, stderr))
			return ExitUsage
		}
		cmd, path = sub, path+" "+n
	}
	writeUsage(stdout, path, cmd, flagSet(cmd, path, stderr))
	return ExitOK
}

func find(cmd *Command, name string) *Command {
	for _, s := range cmd.Commands {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// wantsHelp reports -h or --help among the arguments before "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "--help", "-help":
			return true
		}
	}
	return false
}

func flagSet(cmd *Command, path string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by Usagef, with the usage
	fs.Usage = func() {}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	return fs
}

// parse parses flags that may come before or after the positional
// arguments and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// writeUsage prints a command's usage line, help, subcommands and flags.
func writeUsage(w io.Writer, path string, cmd *Command, fs *flag.FlagSet) {
	line := "usage: " + path
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	switch {
	case len(cmd.Commands) > 0 && cmd.Run == nil:
		line += " COMMAND [ARGUMENTS]"
	case len(cmd.Commands) > 0:
		line += " [COMMAND]"
		if hasFlags {
			line += " [FLAGS]"
		}
	default:
		if hasFlags {
			line += " [FLAGS]"
		}
		if cmd.Args != "" {
			line += " " + cmd.Args
		}
	}
	fmt.Fprintln(w, line)
	if cmd.Help != "" {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.TrimSpace(cmd.Help))
	}
	if len(cmd.Commands) > 0 {
		fmt.Fprintln(w, "\nCommands:")
		width := 0
		for _, s := range cmd.Commands {
			width = max(width, len(s.Name))
		}
		for _, s := range cmd.Commands {
			fmt.Fprintf(w, "  %-*s  %s\n", width, s.Name, s.Summary)
		}
		fmt.Fprintf(w, "\n`%s help COMMAND` or `%s COMMAND --help` shows a command's flags.\n", path, path)
	}
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			head := "  --" + f.Name
			if name != "" {
				head += " " + name
			}
			if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" {
				usage += fmt.Sprintf(" (default %s)", def)
			}
			fmt.Fprintf(w, "%s\n      %s\n", head, usage)
		})
	}
	if cmd.Exits != "" {
		fmt.Fprintln(w, "\nExit status: "+cmd.Exits+".")
	} else {
		fmt.Fprintln(w, "\nExit status: 0 done, 1 failed, 64 usage error.")
	}
}

// Walk calls fn for every command of the tree with its path.
func Walk(root *Command, fn func(path []string, c *Command)) {
	var walk func([]string, *Command)
	walk = func(p []string, c *Command) {
		fn(p, c)
		for _, s := range c.Commands {
			walk(append(append([]string(nil), p...), s.Name), s)
		}
	}
	walk(nil, root)
}
