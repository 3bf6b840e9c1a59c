package scripthook

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// library is one version of a function library given to RegisterLibrary.
// It never changes once published: registering a changed body publishes a
// new library under the same name, and every server's record compares
// against the current one by pointer.
type library struct {
	name string
	code string
	// funcs are the names of the functions the code registers by a literal
	// name, in lower case (Redis looks function names up ignoring case).
	funcs []string
	// forge: the code's own error replies could read like the server's
	// "Function not found" (see forgeable); echoes: it builds error
	// replies from strings it is given.
	forge, echoes bool
}

// mayForge reports whether a call of one of the library's functions with
// the arguments of args (the whole FCALL) could answer "Function not found"
// itself: the code holds that text, or it builds error replies from
// strings and an argument holds it. Such a call gets no repair.
func (l *library) mayForge(args []interface{}) bool {
	return l.forge || l.echoes && len(args) > 3 && fnArgsForge(args[3:])
}

// libraries is a Hook's registered function libraries. Reads (one per
// FCALL) take no lock while none is registered.
type libraries struct {
	n      atomic.Int32
	mu     sync.RWMutex
	byName map[string]*library
	byFunc map[string]*library // by lower-case function name
}

// forFunction returns the current library that registers the function an
// FCALL names, or nil.
func (ls *libraries) forFunction(name string) *library {
	if ls.n.Load() == 0 {
		return nil
	}
	key := lowerASCII(name)
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	return ls.byFunc[key]
}

// current returns the library registered under name now, or nil.
func (ls *libraries) current(name string) *library {
	if ls.n.Load() == 0 {
		return nil
	}
	ls.mu.RLock()
	defer ls.mu.RUnlock()
	return ls.byName[name]
}

// register publishes a library. The same code under the same name changes
// nothing; a changed one replaces the old version for every server.
func (ls *libraries) register(code string) (*library, error) {
	name, err := libraryName(code)
	if err != nil {
		return nil, err
	}
	funcs := functionNames(code)
	if len(funcs) == 0 {
		return nil, fmt.Errorf("scripthook: library %q registers no function by a literal name (redis.register_function('name', ...) or {function_name='name', ...}); scripthook could not tell which calls are its", name)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.byName == nil {
		ls.byName = make(map[string]*library)
		ls.byFunc = make(map[string]*library)
	}
	old := ls.byName[name]
	if old != nil && old.code == code {
		return old, nil
	}
	for _, f := range funcs {
		if other := ls.byFunc[f]; other != nil && other.name != name {
			return nil, fmt.Errorf("scripthook: function %q of library %q is registered already by library %q (a server refuses to load both)", f, name, other.name)
		}
	}
	l := &library{name: name, code: strings.Clone(code), funcs: funcs}
	l.forge, l.echoes = containsFold(code, "not found"), strings.Contains(code, "err")
	if old != nil {
		for _, f := range old.funcs {
			delete(ls.byFunc, f)
		}
	} else {
		ls.n.Add(1)
	}
	ls.byName[name] = l
	for _, f := range funcs {
		ls.byFunc[f] = l
	}
	return l, nil
}

// errNoHeader is RegisterLibrary's error for code without the metadata line.
var errNoHeader = errors.New(`scripthook: a function library starts with the line "#!lua name=<library>"`)

// libraryName reads the library's name from its first line, as the server
// does: "#!<engine>" (only Lua exists, in any case) right after "#!", then
// space-separated parameters, of which name= (in any case, given once) is
// the only one allowed; a name is letters, digits and underscores. What the
// server refuses is refused here, and what it loads is accepted.
func libraryName(code string) (string, error) {
	if !strings.HasPrefix(code, "#!") {
		return "", errNoHeader
	}
	line, _, _ := strings.Cut(code[2:], "\n")
	parts := strings.Fields(line)
	// The engine is the first word, "#!" included: "#! lua" names none.
	if len(parts) == 0 || line[0] == ' ' || line[0] == '\t' || !strings.EqualFold(parts[0], "lua") {
		return "", fmt.Errorf(`scripthook: library engine is not Lua in %q (want "#!lua name=<library>")`, "#!"+line)
	}
	name, named := "", false
	for _, p := range parts[1:] {
		if len(p) < 5 || !strings.EqualFold(p[:5], "name=") {
			return "", fmt.Errorf("scripthook: library header %q has a parameter the server refuses: %q", "#!"+line, p)
		}
		if named {
			return "", fmt.Errorf("scripthook: library header %q gives the name twice, which the server refuses", "#!"+line)
		}
		name, named = p[5:], true
	}
	if name == "" {
		return "", fmt.Errorf("scripthook: library header %q gives no name (want \"#!lua name=<library>\")", "#!"+line)
	}
	for i := 0; i < len(name); i++ {
		if !isIdent(name[i]) {
			return "", fmt.Errorf("scripthook: library name %q may hold only letters, digits and underscores", name)
		}
	}
	return name, nil
}

// functionNames finds the functions the code registers by a literal name:
// redis.register_function('name', ...), or with a table,
// redis.register_function{function_name = 'name', ...}. Names built at run
// time are not found, and a call of such a function reaches the caller as
// the server answers it; README says so.
func functionNames(code string) []string {
	var out []string
	seen := map[string]bool{}
	rest := code
	for {
		i := strings.Index(rest, "register_function")
		if i < 0 {
			return out
		}
		rest = rest[i+len("register_function"):]
		s := skipSpace(rest)
		if s == "" {
			return out
		}
		var name string
		var ok bool
		switch s[0] {
		case '(':
			s = skipSpace(s[1:])
			if s != "" && s[0] == '{' {
				name, ok = tableName(s[1:])
			} else {
				name, ok = quoted(s)
			}
		case '{':
			name, ok = tableName(s[1:])
		case '"', '\'':
			name, ok = quoted(s) // redis.register_function 'name' is not valid Lua with a callback; harmless
		}
		if ok && name != "" {
			if key := lowerASCII(name); !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
		}
	}
}

// tableName finds function_name = 'name' in a table constructor's fields.
func tableName(s string) (string, bool) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{', '(':
			depth++
		case '}', ')':
			if depth == 0 {
				return "", false
			}
			depth--
		case 'f':
			if depth == 0 && strings.HasPrefix(s[i:], "function_name") && (i == 0 || !isIdent(s[i-1])) {
				t := skipSpace(s[i+len("function_name"):])
				if t == "" || t[0] != '=' {
					continue
				}
				return quoted(skipSpace(t[1:]))
			}
		}
	}
	return "", false
}

// quoted reads a short Lua string literal without escapes.
func quoted(s string) (string, bool) {
	if s == "" || (s[0] != '"' && s[0] != '\'') {
		return "", false
	}
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case q:
			return s[1:i], true
		case '\\', '\n':
			return "", false
		}
	}
	return "", false
}

func skipSpace(s string) string {
	return strings.TrimLeft(s, " \t\r\n")
}

func isIdent(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// lowerASCII returns s in lower case, allocating only when it has upper
// case letters.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// libraryOf reads the library name of a caller's FUNCTION LOAD, for the
// hook's record of what the server has; "" when it cannot.
func libraryOf(args []interface{}) string {
	if len(args) < 3 {
		return ""
	}
	code, ok := textArg(args[len(args)-1])
	if !ok {
		return ""
	}
	name, err := libraryName(code)
	if err != nil {
		return ""
	}
	return name
}
