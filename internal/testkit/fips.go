package testkit

import "crypto/sha1"

// FIPSOnly reports whether the program may not use SHA-1 (GODEBUG=
// fips140=only), as crypto/fips140.Enforced does from Go 1.26 on. It asks
// crypto/sha1 itself, as the library does, so that the tests build on the
// oldest Go the module supports (README, "Supported versions").
func FIPSOnly() bool {
	_, err := sha1.New().Write([]byte{0})
	return err != nil
}
