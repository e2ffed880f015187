package cache

import "gateagent/verify"

// SetFailAfter makes Apply fail after n writes inside its transaction.
func SetFailAfter(c *Cache, n int) { c.failAfter = n }

// EncodeRecord returns the stored form of a certificate, for the raw floor.
func EncodeRecord(c *verify.Cert) []byte {
	var v [recordLen]byte
	putRecord(&v, c, 0)
	return v[:]
}
