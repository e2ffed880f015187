// Package conf decodes the gate's configuration file, written in a small,
// strict subset of TOML, into Go structs.
//
// It exists for one reason: an unknown key must be an error that names its
// line, so that a technician's typo never leaves a default silently in
// force. Every problem is reported as an *Error carrying the file name, the
// line number and the dotted key. The package uses only the standard library.
//
// # The language
//
// A file is UTF-8 text, read line by line. A leading UTF-8 byte order mark
// is skipped. Lines end in LF or CRLF. Spaces and tabs separate tokens;
// blank lines are ignored. A line is one of:
//
//	# a comment, to the end of the line
//	[section]            # a section header
//	[section.sub]        # a nested section (at most 8 levels)
//	key = value          # an assignment, with an optional comment after it
//
// Section and key names are bare: ASCII letters, digits, "_" and "-".
// Spaces are allowed around the dots and inside the brackets of a header.
// Assignments before the first header belong to the top level; the others
// belong to the section of the last header. Quoted keys, dotted keys
// (a.b = 1), inline tables ({...}), arrays of tables ([[...]]), multi-line
// strings and multi-line arrays are not accepted.
//
// A value is one of:
//
//   - a basic string, "...", with the escapes \" \\ \n \t \r and \uXXXX
//     (a Unicode scalar value); any other escape is an error;
//   - a literal string, '...', taken as written (it cannot contain ');
//   - a decimal integer, with an optional sign and "_" between digits as in
//     TOML (1_000), without leading zeros; an integer that does not fit the
//     field, or 64 bits, is an error;
//   - true or false;
//   - an array on one line, of strings only or of integers only: ["a", "b"],
//     [1, 2, 3]. A trailing comma and the empty array [] are accepted.
//
// Strings and comments must not contain control characters other than tab.
// Floats, dates and times are not part of the language: write a duration as
// a string such as "250ms". Anything else, such as an unquoted word, an
// unterminated string or text after a value, is an error of its line, and
// so is a key set twice in a section or a section header given twice.
// A header [a] may follow [a.b], as in TOML.
//
// # Mapping to Go
//
// Decode fills a struct through reflection. A field takes part only if it
// has a tag conf:"name", where name is a bare key; a field without a tag is
// never set from the file, whatever its Go name, and conf:"-" is the same as
// no tag. A tagged field must be exported, and tag names must be unique
// within a struct. An embedded struct is a field like any other (its fields
// are not promoted).
//
// A field of struct type, or of pointer-to-struct type, is a section: the
// header [name] (or [parent.name]) selects it, and a nil pointer is
// allocated when its section, or one of its subsections, appears. Assigning
// a value to a section, or giving a header for a key, is an error.
//
// The other field types, and the values they take, are:
//
//	string (and named string types)     a string
//	bool                                true or false
//	int, int8 ... int64                 an integer, range-checked
//	uint, uint8 ... uint64              an integer, range-checked
//	time.Duration                       a string for time.ParseDuration,
//	                                    such as "250ms" or "10s"; negative
//	                                    durations are refused
//	[]string                            an array of strings
//	[]int, []int8 ... []uint64          an array of integers, range-checked
//	encoding.TextUnmarshaler            a string, given to UnmarshalText
//
// A type implementing encoding.TextUnmarshaler (through its pointer, or a
// pointer type itself) is always decoded that way, even if it is a struct
// (net/netip.Addr, time.Time). UnmarshalText is called on a new zero value,
// which then replaces the field. An array, even an empty one, replaces the
// whole slice. A field of any other type is a programming error, reported
// by Decode whatever the file holds.
//
// Keys and sections the file leaves out keep the values the struct held
// before Decode, so callers fill in the defaults first. Decode is atomic:
// when it returns an error, the struct is left exactly as it was (pointer
// sections included; a TextUnmarshaler whose value shares memory with the
// default is never called on that default).
//
// Unknown keys and unknown sections are errors; the message lists, sorted,
// the keys (or sections) that the section does know.
//
// Keys lists every key a struct type accepts, dotted and in declaration
// order, so that a test can check that an example file documents them all.
// No key is required by this package: a caller that needs one (such as a
// format version) fills in a value the file must replace, and checks it.
//
// # Errors
//
// Problems in the file are reported as *Error values. Decode does not stop at
// the first one, so that a technician sees every typo at once: if there is
// one problem, Decode returns its *Error; if there are several, it returns
// errors.Join of them in line order (use errors.As for the first, or the
// Unwrap() []error method for all). At most 20 problems are reported; when
// there are more, a 21st *Error says so and the rest of the file is not
// checked. An *Error prints as
//
//	/etc/gateagent/gateagent.toml:12: hw.relay.pinn: unknown key (known keys in [hw.relay]: active_low, pin)
//	/etc/gateagent/gateagent.toml:7: unterminated section header: missing ]
//
// that is "file:line: key: message", without the key for errors that have
// none (syntax errors outside an assignment) and without the line for errors
// about the whole file. The error returned by a TextUnmarshaler is part of
// the message and is returned by (*Error).Unwrap, so errors.Is sees it.
//
// Errors in the Go types (an unsupported field type, a tag on an unexported
// field, a duplicate tag, a v that is not a pointer to a struct) are
// programming errors: Decode returns them as plain errors starting with
// "conf:", and Keys panics with them.
//
// # Limits
//
// Decode never panics on any input (it is fuzzed) and bounds its work: a
// file over 1 MiB is refused as a whole, a line over 64 KiB is an error, and
// a section header nested deeper than 8 levels is an error. The work is
// linear in the size of the file.
package conf
