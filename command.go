package scripthook

import (
	"encoding"
	"net"
	"unsafe"
)

// kind is what a command is to scripthook. It is decided once per command by
// classify, the one place that recognises commands; every path (single,
// batch, tracing) works from its answer.
type kind uint8

const (
	kindOther kind = iota
	kindEval
	kindEvalRO
	kindEvalSha
	kindEvalShaRO
	kindFCall
	kindFCallRO
	kindScriptFlush // SCRIPT FLUSH [ASYNC|SYNC]: the server forgets every script
	kindFunction    // FUNCTION FLUSH, DELETE, LOAD or RESTORE: libraries may change
	kindMulti
	kindExec
	kindDiscard
	kindAsking
)

// isScript reports the four script commands.
func (k kind) isScript() bool { return k >= kindEval && k <= kindEvalShaRO }

// isFCall reports FCALL and FCALL_RO.
func (k kind) isFCall() bool { return k == kindFCall || k == kindFCallRO }

// hasBody reports EVAL and EVAL_RO, which carry the script itself.
func (k kind) hasBody() bool { return k == kindEval || k == kindEvalRO }

// readOnly reports the _RO variants.
func (k kind) readOnly() bool { return k == kindEvalRO || k == kindEvalShaRO || k == kindFCallRO }

// bySHA is the command that runs the same script by SHA1 in the same mode.
func (k kind) bySHA() kind {
	if k.readOnly() {
		return kindEvalShaRO
	}
	return kindEvalSha
}

// byBody is the command that runs the same script with its body.
func (k kind) byBody() kind {
	if k.readOnly() {
		return kindEvalRO
	}
	return kindEval
}

// String is the command's name in upper case, as traces show it.
func (k kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return ""
}

var kindNames = [...]string{
	kindEval: "EVAL", kindEvalRO: "EVAL_RO", kindEvalSha: "EVALSHA", kindEvalShaRO: "EVALSHA_RO",
	kindFCall: "FCALL", kindFCallRO: "FCALL_RO",
}

// wireName is the lower-case name scripthook writes for a command it sends
// in place of the caller's; boxed once so building one allocates nothing.
var wireName = [...]interface{}{
	kindEval: "eval", kindEvalRO: "eval_ro", kindEvalSha: "evalsha", kindEvalShaRO: "evalsha_ro",
}

// classify says what a command is. It accepts every spelling go-redis
// writes: a name or subcommand given as string, []byte, *string, or any
// other value go-redis would write as those bytes (a BinaryMarshaler, say),
// in any case. Every command pays for it, so the common answer (kindOther)
// comes after a type switch and a length check.
func classify(args []interface{}) kind {
	if len(args) == 0 {
		return kindOther
	}
	name, ok := word(args[0])
	if !ok || len(name) < 4 || len(name) > 10 {
		return kindOther
	}
	switch len(name) {
	case 4:
		switch {
		case equalFold(name, "eval"):
			return kindEval
		case equalFold(name, "exec"):
			return kindExec
		}
	case 5:
		switch {
		case equalFold(name, "fcall"):
			return kindFCall
		case equalFold(name, "multi"):
			return kindMulti
		}
	case 6:
		switch {
		case equalFold(name, "script"):
			if len(args) >= 2 {
				if sub, ok := word(args[1]); ok && equalFold(sub, "flush") {
					return kindScriptFlush
				}
			}
		case equalFold(name, "asking"):
			return kindAsking
		}
	case 7:
		switch {
		case equalFold(name, "evalsha"):
			return kindEvalSha
		case equalFold(name, "eval_ro"):
			return kindEvalRO
		case equalFold(name, "discard"):
			return kindDiscard
		}
	case 8:
		switch {
		case equalFold(name, "fcall_ro"):
			return kindFCallRO
		case equalFold(name, "function"):
			if len(args) >= 2 {
				if sub, ok := word(args[1]); ok && (equalFold(sub, "flush") || equalFold(sub, "delete") ||
					equalFold(sub, "load") || equalFold(sub, "restore")) {
					return kindFunction
				}
			}
		}
	case 10:
		if equalFold(name, "evalsha_ro") {
			return kindEvalShaRO
		}
	}
	return kindOther
}

// word returns the text go-redis writes for an argument that can be a
// command name or subcommand. A []byte is viewed, not copied: the result is
// only compared, never kept. Numbers and other values cannot spell a name
// scripthook cares about.
func word(v interface{}) (string, bool) {
	switch w := v.(type) {
	case string:
		return w, true
	case []byte:
		return unsafe.String(unsafe.SliceData(w), len(w)), true
	case *string:
		if w == nil {
			return "", true
		}
		return *w, true
	case net.IP:
		return string(w), true
	case encoding.BinaryMarshaler:
		// go-redis writes what MarshalBinary returns. Calling it twice is
		// what go-redis itself does for a command that two hooks look at.
		b, err := w.MarshalBinary()
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}

// equalFold compares an ASCII name with a lower-case constant.
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
