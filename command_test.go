package scripthook

import (
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

// bin is a command name given as a BinaryMarshaler, which go-redis writes
// as the bytes it returns.
type bin string

func (b bin) MarshalBinary() ([]byte, error) { return []byte(b), nil }

// Every spelling go-redis writes is recognised: string, []byte, *string, a
// BinaryMarshaler, in any case; subcommands likewise.
func TestClassifyEverySpelling(t *testing.T) {
	script, flush, multi := "script", "FLUSH", "Multi"
	cases := []struct {
		args []interface{}
		want kind
	}{
		{[]interface{}{"eval", "b", 0}, kindEval},
		{[]interface{}{[]byte("EVAL"), "b", 0}, kindEval},
		{[]interface{}{"EvalSha_RO", "s", 0}, kindEvalShaRO},
		{[]interface{}{bin("evalsha"), "s", 0}, kindEvalSha},
		{[]interface{}{"eval_ro", "b", 0}, kindEvalRO},
		{[]interface{}{"FCALL", "f", 0}, kindFCall},
		{[]interface{}{[]byte("fcall_ro"), "f", 0}, kindFCallRO},
		{[]interface{}{"script", "flush"}, kindScriptFlush},
		{[]interface{}{[]byte("script"), []byte("flush")}, kindScriptFlush},
		{[]interface{}{&script, &flush, "async"}, kindScriptFlush},
		{[]interface{}{"SCRIPT", bin("Flush")}, kindScriptFlush},
		{[]interface{}{"script", "load", "x"}, kindOther},
		{[]interface{}{"function", "flush"}, kindFunction},
		{[]interface{}{"FUNCTION", []byte("DELETE"), "lib"}, kindFunction},
		{[]interface{}{"function", "list"}, kindOther},
		{[]interface{}{&multi}, kindMulti},
		{[]interface{}{[]byte("exec")}, kindExec},
		{[]interface{}{"DISCARD"}, kindDiscard},
		{[]interface{}{"asking"}, kindAsking},
		{[]interface{}{net.IP("exec")}, kindExec},
		{[]interface{}{"evalx", "b", 0}, kindOther},
		{[]interface{}{"get", "k"}, kindOther},
		{[]interface{}{"expire", "k", 1}, kindOther},
		{[]interface{}{42, "b", 0}, kindOther},
		{[]interface{}{(*string)(nil)}, kindOther},
		{nil, kindOther},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, classify(tc.args), "%#v", tc.args)
	}
}

// quickOther, the filter every command pays for, never hides a command
// classify recognises.
func TestQuickOtherHidesNothing(t *testing.T) {
	for _, name := range []string{"eval", "EVAL_RO", "evalsha", "Evalsha_ro", "fcall", "FCALL_RO", "script",
		"function", "multi", "EXEC", "discard", "asking"} {
		assert.False(t, quickOther([]interface{}{name, "flush", 0}), name)
	}
	for _, name := range []string{"get", "set", "hset", "expire", "mget", "del", "zadd", "ping"} {
		assert.Equal(t, kindOther, classify([]interface{}{name, "flush"}), name)
	}
}

func TestParseScript(t *testing.T) {
	body := "return 1"
	sbody := body
	cases := []struct {
		name string
		args []interface{}
		ok   bool
		keys int
	}{
		{"eval", []interface{}{"eval", body, 0}, true, 0},
		{"keys", []interface{}{"EVAL", body, 1, "k"}, true, 1},
		{"numkeys text", []interface{}{"Eval_Ro", body, "1", "k", "a"}, true, 1},
		{"bytes body", []interface{}{"eval", []byte(body), int64(0)}, true, 0},
		{"*string body", []interface{}{"eval", &sbody, uint8(0)}, true, 0},
		{"missing numkeys", []interface{}{"eval", body}, false, 0},
		{"negative numkeys", []interface{}{"eval", body, -1}, false, 0},
		{"numkeys too large", []interface{}{"eval", body, 2, "k"}, false, 0},
		{"numkeys word", []interface{}{"eval", body, "x"}, false, 0},
		{"numkeys plus", []interface{}{"eval", body, "+1", "k"}, false, 0},
		{"numkeys leading zero", []interface{}{"eval", body, "01", "k"}, false, 0},
		{"numkeys float", []interface{}{"eval", body, 1.0, "k"}, false, 0},
		{"numkeys huge", []interface{}{"eval", body, int64(1) << 40}, false, 0},
		{"body int", []interface{}{"eval", 123, 0}, false, 0},
		{"body nil", []interface{}{"eval", nil, 0}, false, 0},
		{"sha int", []interface{}{"evalsha", 42, 0}, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc, ok := parseScript(classify(tc.args), tc.args)
			assert.Equal(t, tc.ok, ok)
			if ok {
				assert.Equal(t, tc.keys, sc.numKeys)
				assert.Equal(t, body, sc.body)
			}
		})
	}
	sc, ok := parseScript(kindFCall, []interface{}{"fcall", "myfunc", 1, "k", "a"})
	assert.True(t, ok)
	assert.Equal(t, "myfunc", sc.function)
	assert.Equal(t, callInfo{numKeys: 1, nargs: 2, arg: "myfunc"}, sc.info())
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
	// "$32768\r\n" + body + "\r\n" against "$40\r\n" + sha + "\r\n", minus
	// the three extra bytes of the longer name.
	assert.Equal(t, (1+5+2+32768+2)-(1+2+2+40+2)-3, savedBytes(kindEval, 32768))
	// EVALSHA is longer than EVAL for bodies shorter than 44 bytes.
	assert.LessOrEqual(t, savedBytes(kindEval, 43), 0)
	assert.Positive(t, savedBytes(kindEval, 44))
	assert.Equal(t, len("*3\r\n$6\r\nscript\r\n$4\r\nload\r\n$5\r\nhello\r\n"), loadBytes(5))
}

// The server's refusals are recognised by their exact texts only, on every
// server version; a script's own error that merely starts alike is not.
func TestRefusalTexts(t *testing.T) {
	assert.True(t, isNoScript(replyErr("NOSCRIPT No matching script. Please use EVAL.")))
	assert.True(t, isNoScript(replyErr("NOSCRIPT No matching script."))) // Valkey 8
	assert.False(t, isNoScript(replyErr("NOSCRIPT pretend")))
	assert.False(t, isNoScript(plainErr("NOSCRIPT No matching script. Please use EVAL."))) // not a reply
	assert.True(t, isDenied(replyErr("NOPERM User u has no permissions to run the 'evalsha' command"), "evalsha"))
	assert.True(t, isDenied(replyErr("NOPERM this user has no permissions to run the 'evalsha' command"), "evalsha"))
	assert.True(t, isDenied(replyErr("NOPERM User u has no permissions to run the 'script|load' command"), "script|load"))
	assert.False(t, isDenied(replyErr("NOPERM User u has no permissions to run the 'evalsha_ro' command"), "evalsha"))
	assert.False(t, isDenied(replyErr("NOPERM No permissions to access a key"), "evalsha"))
	assert.True(t, isCompileError(replyErr("ERR Error compiling script (new function): user_script:1: x")))

	forge, echoes := forgeable("return redis.error_reply('NOSCRIPT pretend')")
	assert.True(t, forge)
	assert.True(t, echoes)
	forge, _ = forgeable("return string.upper('noscript no matching script.')")
	assert.True(t, forge, "any case")
	forge, echoes = forgeable("return 1")
	assert.False(t, forge)
	assert.False(t, echoes)
	assert.True(t, argsForge([]interface{}{"k", []byte("NoScript No matching script.")}))
	assert.False(t, argsForge([]interface{}{"k", 1, "scripts"}))
}

// replyErr is a server's error reply; plainErr an error that is not one.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

type plainErr string

func (e plainErr) Error() string { return string(e) }
