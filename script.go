package scripthook

import (
	"strconv"
	"unsafe"
)

// scriptCall is a well-formed script command taken apart. Every path takes
// a script command apart with parseScript, once.
type scriptCall struct {
	kind kind
	// body is the caller's script for EVAL/EVAL_RO, not copied: it aliases
	// the caller's argument, which may be a []byte viewed as a string, so it
	// is compared, hashed or copied while the call runs and never kept.
	body string
	// sha is the caller's SHA1 argument of EVALSHA/EVALSHA_RO, as given;
	// function the function an FCALL/FCALL_RO calls.
	sha      string
	function string
	numKeys  int
	// nargs counts the keys and arguments after numkeys.
	nargs int
}

// info returns what later stages keep of the call.
func (sc *scriptCall) info() callInfo {
	arg := sc.sha
	if sc.kind.isFCall() {
		arg = sc.function
	}
	return callInfo{numKeys: int32(sc.numKeys), nargs: int32(sc.nargs), arg: arg}
}

// parseScript takes a script (or function) command apart. It returns false for a command
// that is not a well-formed script command (a body or SHA1 that is neither
// text nor bytes, numkeys that cannot be read for certain, negative or larger
// than the arguments): such commands go to the server unchanged, so that a
// malformed one gets the server's own error.
func parseScript(k kind, args []interface{}) (scriptCall, bool) {
	sc := scriptCall{kind: k}
	if len(args) < 3 {
		return sc, false
	}
	n, ok := parseNumKeys(args[2])
	if !ok || n < 0 || n > len(args)-3 {
		return sc, false
	}
	sc.numKeys, sc.nargs = n, len(args)-3
	text, ok := textArg(args[1])
	if !ok {
		return sc, false
	}
	switch {
	case k.hasBody():
		sc.body = text
	case k.isFCall():
		sc.function = text
	default:
		sc.sha = text
	}
	return sc, true
}

// parseFCall takes an FCALL or FCALL_RO apart for the hook's library work.
// Unlike other script commands, one with malformed numkeys is still the
// call of its function: the server looks the function up before it reads
// numkeys, so with the library loaded the caller gets the server's numkeys
// error, and without it "Function not found". Such a call therefore gets
// the library like any other (numKeys reads 0 for the spans). Only a call
// too short to name a function, or whose name is no text, is not one (the
// server refuses the first by arity, before anything runs).
func parseFCall(k kind, args []interface{}) (scriptCall, bool) {
	sc := scriptCall{kind: k}
	if len(args) < 3 {
		return sc, false
	}
	name, ok := fnNameArg(args[1])
	if !ok {
		return sc, false
	}
	sc.function, sc.nargs = name, len(args)-3
	if n, ok := parseNumKeys(args[2]); ok && n >= 0 && n <= sc.nargs {
		sc.numKeys = n
	}
	return sc, true
}

// fnNameArg reads a function name argument as go-redis writes it: text, or
// an integer (function names may be digits only).
func fnNameArg(v interface{}) (string, bool) {
	if t, ok := textArg(v); ok {
		return t, true
	}
	switch n := v.(type) {
	case int:
		return strconv.FormatInt(int64(n), 10), true
	case int64:
		return strconv.FormatInt(n, 10), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case uint:
		return strconv.FormatUint(uint64(n), 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	case uint32:
		return strconv.FormatUint(uint64(n), 10), true
	}
	return "", false
}

// textArg views a body or SHA1 argument as a string without copying it.
func textArg(v interface{}) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case []byte:
		return unsafe.String(unsafe.SliceData(t), len(t)), true
	case *string:
		if t != nil {
			return *t, true
		}
	}
	return "", false
}

// parseNumKeys reads numkeys the way go-redis would write it. Anything it
// cannot read for certain makes the command pass through untouched.
func parseNumKeys(v interface{}) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), n >= -1<<31 && n <= 1<<31
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
		return atoiStrict(unsafe.String(unsafe.SliceData(n), len(n)))
	case *string:
		if n != nil {
			return atoiStrict(*n)
		}
	}
	return 0, false
}

// atoiStrict accepts only what Redis's string2ll accepts for small numbers:
// an optional minus sign and digits, no spaces, no plus sign, no leading
// zeros.
func atoiStrict(s string) (int, bool) {
	if s == "" || s[0] == '+' || len(s) > 10 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false
	}
	if len(s) > 1 && (s[0] == '0' || (s[0] == '-' && s[1] == '0')) {
		return 0, false
	}
	return n, true
}

// normalizeSHA returns a SHA1 argument in lower case, as the cache keys it
// (the server ignores its case), and false if it cannot be a SHA1.
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

// savedBytes is how many request bytes EVALSHA writes less than EVAL for a
// body of n bytes, in RESP (negative for bodies shorter than a SHA1).
func savedBytes(k kind, n int) int {
	body := 1 + digits(n) + 2 + n + 2
	const sha = 1 + 2 + 2 + 40 + 2
	name := 3 // "$7\r\nevalsha\r\n" against "$4\r\neval\r\n"
	if k.readOnly() {
		name = 4 // "$10\r\nevalsha_ro\r\n" against "$7\r\neval_ro\r\n"
	}
	return body - sha - name
}

// loadBytes is what a SCRIPT LOAD of a body of n bytes writes.
func loadBytes(n int) int {
	return 4 + 12 + 10 + 1 + digits(n) + 2 + n + 2 // *3, $6 script, $4 load, $n body
}

func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}
