package scripthook

import (
	"strconv"
)

// scriptKind says which of the four script commands a command is.
type scriptKind uint8

const (
	kindEval scriptKind = iota + 1
	kindEvalRO
	kindEvalSha
	kindEvalShaRO
)

// Boxed once, so building a rewritten command does not allocate for them.
var (
	argEvalSha   interface{} = "evalsha"
	argEvalShaRO interface{} = "evalsha_ro"
	argEval      interface{} = "eval"
	argEvalRO    interface{} = "eval_ro"
)

// hasBody reports whether the command carries the script body.
func (k scriptKind) hasBody() bool { return k == kindEval || k == kindEvalRO }

// readOnly reports whether the command is one of the _RO variants.
func (k scriptKind) readOnly() bool { return k == kindEvalRO || k == kindEvalShaRO }

// shaName is the command that runs the script by SHA1 in the same mode.
func (k scriptKind) shaName() string {
	if k.readOnly() {
		return "evalsha_ro"
	}
	return "evalsha"
}

func (k scriptKind) shaArg() interface{} {
	if k.readOnly() {
		return argEvalShaRO
	}
	return argEvalSha
}

// bodyArg is the command that sends the body in the same mode.
func (k scriptKind) bodyArg() interface{} {
	if k.readOnly() {
		return argEvalRO
	}
	return argEval
}

// String returns the command name in upper case, as traces show it.
func (k scriptKind) String() string {
	switch k {
	case kindEval:
		return "EVAL"
	case kindEvalRO:
		return "EVAL_RO"
	case kindEvalSha:
		return "EVALSHA"
	case kindEvalShaRO:
		return "EVALSHA_RO"
	}
	return ""
}

// scriptCall is a well-formed script command taken apart. It is the one place
// that decides "is this a script command, and what are its parts"; the single
// path, the pipeline path and tracing all use it.
type scriptCall struct {
	kind scriptKind
	// body is set for EVAL/EVAL_RO with a string body; bodyBytes for a []byte
	// body. Neither is copied: they alias the caller's argument.
	body      string
	bodyBytes []byte
	isBytes   bool
	// sha is the caller's SHA1 argument of EVALSHA/EVALSHA_RO, as given.
	sha     string
	numKeys int
	// nargs counts the keys and arguments after numkeys.
	nargs int
}

// callInfo is what later stages need of a scriptCall, without the body: a
// batch keeps one per command.
type callInfo struct {
	kind    scriptKind
	numKeys int32
	nargs   int32
	bodyLen int32
	sha     string // the caller's SHA1 argument, for EVALSHA
}

// info returns the call's callInfo.
func (s *scriptCall) info() callInfo {
	return callInfo{kind: s.kind, numKeys: int32(s.numKeys), nargs: int32(s.nargs), bodyLen: int32(s.bodyLen()), sha: s.sha}
}

// bodyLen is the length of the script body in bytes.
func (s *scriptCall) bodyLen() int {
	if s.isBytes {
		return len(s.bodyBytes)
	}
	return len(s.body)
}

// maybeScript is parseScript's first check, small enough to be inlined into
// every caller, so that other commands pay only for it.
func maybeScript(args []interface{}) bool {
	if len(args) < 3 {
		return false
	}
	name, ok := args[0].(string)
	// Every script command starts with "ev", and few others do (EXPIRE,
	// EXISTS, EXEC and ECHO stop here).
	return ok && len(name) >= 4 && len(name) <= 10 && (name[0]|0x20) == 'e' && (name[1]|0x20) == 'v'
}

// parseScript takes a command's arguments apart. It returns false for every
// command that is not a well-formed script command; such commands go to the
// server unchanged, so that a malformed one gets the server's own error.
//
// It must stay cheap: every command through the hook pays for the first
// checks, so they look only at the length and the first letters of args[0].
func parseScript(args []interface{}) (scriptCall, bool) {
	var sc scriptCall
	if !maybeScript(args) {
		return sc, false
	}
	name := args[0].(string)
	switch {
	case equalFold(name, "eval"):
		sc.kind = kindEval
	case equalFold(name, "evalsha"):
		sc.kind = kindEvalSha
	case equalFold(name, "eval_ro"):
		sc.kind = kindEvalRO
	case equalFold(name, "evalsha_ro"):
		sc.kind = kindEvalShaRO
	default:
		return sc, false
	}
	n, ok := parseNumKeys(args[2])
	// Redis rejects a negative numkeys and one larger than the arguments that
	// follow; leave both to the server so the caller gets its error.
	if !ok || n < 0 || n > len(args)-3 {
		return sc, false
	}
	sc.numKeys = n
	sc.nargs = len(args) - 3
	if sc.kind.hasBody() {
		switch b := args[1].(type) {
		case string:
			sc.body = b
		case []byte:
			sc.bodyBytes = b
			sc.isBytes = true
		default:
			return sc, false
		}
		return sc, true
	}
	sha, ok := args[1].(string)
	if !ok {
		return sc, false
	}
	sc.sha = sha
	return sc, true
}

// parseNumKeys reads numkeys the way go-redis would write it. Anything it
// cannot read for certain makes the command pass through untouched.
func parseNumKeys(v interface{}) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case int32:
		return int(n), true
	case int16:
		return int(n), true
	case int8:
		return int(n), true
	case uint:
		return int(n), n <= 1<<31
	case uint64:
		return int(n), n <= 1<<31
	case uint32:
		return int(n), true
	case uint16:
		return int(n), true
	case uint8:
		return int(n), true
	case string:
		return atoiStrict(n)
	case []byte:
		return atoiStrict(string(n))
	}
	return 0, false
}

// atoiStrict accepts only what Redis's string2ll accepts for small numbers:
// an optional minus sign and digits, no spaces, no plus sign.
func atoiStrict(s string) (int, bool) {
	if s == "" || s[0] == '+' || len(s) > 10 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false
	}
	if len(s) > 1 && (s[0] == '0' || (s[0] == '-' && s[1] == '0')) {
		return 0, false // Redis refuses leading zeros
	}
	return n, true
}

// equalFold compares an ASCII command name with a lower-case constant.
func equalFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// normalizeSHA returns the SHA1 argument in the lower-case form the cache
// uses, and false if it cannot be a SHA1 (Redis lower-cases it too).
func normalizeSHA(s string) (string, bool) {
	if len(s) != 40 {
		return "", false
	}
	upper := false
	for i := 0; i < 40; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case 'A' <= c && c <= 'F':
			upper = true
		default:
			return "", false
		}
	}
	if !upper {
		return s, true
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}
