package scripthook

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseScript(t *testing.T) {
	body := "return 1"
	cases := []struct {
		name string
		args []interface{}
		ok   bool
		kind scriptKind
		keys int
	}{
		{"eval", []interface{}{"eval", body, 0}, true, kindEval, 0},
		{"upper", []interface{}{"EVAL", body, 1, "k"}, true, kindEval, 1},
		{"mixed ro", []interface{}{"Eval_Ro", body, "1", "k", "a"}, true, kindEvalRO, 1},
		{"bytes body", []interface{}{"eval", []byte(body), int64(0)}, true, kindEval, 0},
		{"evalsha", []interface{}{"evalsha", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0}, true, kindEvalSha, 0},
		{"evalsha_ro", []interface{}{"EVALSHA_RO", "x", uint8(0)}, true, kindEvalShaRO, 0},
		{"not a script", []interface{}{"get", "k"}, false, 0, 0},
		{"similar name", []interface{}{"evalx", body, 0}, false, 0, 0},
		{"missing numkeys", []interface{}{"eval", body}, false, 0, 0},
		{"bare eval", []interface{}{"eval"}, false, 0, 0},
		{"negative numkeys", []interface{}{"eval", body, -1}, false, 0, 0},
		{"numkeys too large", []interface{}{"eval", body, 2, "k"}, false, 0, 0},
		{"numkeys text", []interface{}{"eval", body, "x"}, false, 0, 0},
		{"numkeys plus", []interface{}{"eval", body, "+1", "k"}, false, 0, 0},
		{"numkeys leading zero", []interface{}{"eval", body, "01", "k"}, false, 0, 0},
		{"numkeys float", []interface{}{"eval", body, 1.0, "k"}, false, 0, 0},
		{"body int", []interface{}{"eval", 123, 0}, false, 0, 0},
		{"body nil", []interface{}{"eval", nil, 0}, false, 0, 0},
		{"name not string", []interface{}{[]byte("eval"), body, 0}, false, 0, 0},
		{"sha not string", []interface{}{"evalsha", 42, 0}, false, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, ok := parseScript(tc.args)
			assert.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tc.kind, sc.kind)
				assert.Equal(t, tc.keys, sc.numKeys)
			}
		})
	}
}

func TestNormalizeSHA(t *testing.T) {
	s, ok := normalizeSHA("E0E1F9FABFC9D4800C877A703B823AC0578FF8DB")
	assert.True(t, ok)
	assert.Equal(t, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", s)
	_, ok = normalizeSHA("e0e1f9fabfc9d4800c877a703b823ac0578ff8dx")
	assert.False(t, ok)
	_, ok = normalizeSHA("abc")
	assert.False(t, ok)
}

func TestSavedBytes(t *testing.T) {
	body := make([]byte, 32*1024)
	// "$32768\r\n" + body + "\r\n" against "$40\r\n" + sha + "\r\n", minus
	// the three extra bytes of the longer name.
	assert.Equal(t, (1+5+2+32768+2)-(1+2+2+40+2)-3, savedBytes(kindEval, len(body)))
}
