package scripthook

import (
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The server's own refusals, exactly as Redis 7.0-8.0 and Valkey 7.2-8.0
// write them. A command is re-sent only after one of these: they are
// produced before anything runs. A script can return the same text as its
// own error reply; see forgeable.
const (
	noScriptRedis  = "NOSCRIPT No matching script. Please use EVAL."
	noScriptValkey = "NOSCRIPT No matching script." // Valkey 8
	noPermSuffix   = " has no permissions to run the '"
	compilePrefix  = "ERR Error compiling script"
	// noFunction is FCALL's and FCALL_RO's reply for a function the server
	// does not have, given before anything runs.
	noFunction     = "ERR Function not found"
	readOnlyPrefix = "READONLY "
)

// isNoScript reports the server's NOSCRIPT reply: the script named by an
// EVALSHA is not loaded, so nothing ran. Inside the hook chain the reply is
// still the server's error; go-redis turns it into redis.ErrNoScript only
// afterwards.
func isNoScript(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return (msg == noScriptRedis || msg == noScriptValkey) && isRedisError(err)
}

// isNoFunction reports the server's reply to an FCALL of a function it
// does not have: nothing ran.
func isNoFunction(err error) bool {
	return err != nil && err.Error() == noFunction && isRedisError(err)
}

// isReadOnly reports a replica's refusal of a write.
func isReadOnly(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), readOnlyPrefix) && isRedisError(err)
}

// isDenied reports the server's refusal to run a command the user lacks
// permission for ("NOPERM User u has no permissions to run the 'evalsha'
// command", or "NOPERM this user ..." on Redis 7.0). cmd is the command as
// ACL names it: "evalsha", "evalsha_ro", "script|load".
func isDenied(err error, cmd string) bool {
	if err == nil || !isRedisError(err) {
		return false
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "NOPERM ") {
		return false
	}
	rest, ok := strings.CutSuffix(msg, "' command")
	return ok && strings.HasSuffix(rest, noPermSuffix+cmd)
}

// isCompileError reports a script that does not compile. EVAL, EVAL_RO and
// SCRIPT LOAD give the same text for the same body on every server.
func isCompileError(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), compilePrefix) && isRedisError(err)
}

// isRedisError reports an error reply from the server, as opposed to a
// transport or context error.
func isRedisError(err error) bool {
	var rerr redis.Error
	return err != nil && errors.As(err, &rerr)
}

// ok reports a reply that shows the command ran (redis.Nil is a reply).
func ok(err error) bool { return err == nil || err == redis.Nil }

// forgeable reports whether a body could make the server's refusal texts as
// its own error reply (forge), or could build error replies from strings it
// is given (echoes). A call that could forge is sent as written: by SHA1 the
// hook could not tell the script's reply from the server's. It looks for the
// words themselves, in any case (string.upper exists); a script that
// assembles them from pieces or from data it reads is not caught, which
// README states.
func forgeable(body string) (forge, echoes bool) {
	forge = containsFold(body, "noscript") || containsFold(body, "noperm")
	echoes = strings.Contains(body, "err")
	return forge, echoes
}

// argsForge reports whether a call's keys or arguments spell one of the
// refusal words, for a script that echoes strings into error replies.
func argsForge(args []interface{}) bool {
	for _, a := range args {
		if t, ok := textArg(a); ok && (containsFold(t, "noscript") || containsFold(t, "noperm")) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the lower-case ASCII word w in any
// case, without allocating.
func containsFold(s, w string) bool {
	first := w[0]
	for i := 0; i+len(w) <= len(s); i++ {
		if s[i]|0x20 != first {
			continue
		}
		if equalFold(s[i:i+len(w)], w) {
			return true
		}
	}
	return false
}
