//go:build !linux

package serve

import "net"

// cork is Linux's TCP_CORK; elsewhere responses are sent uncorked.
func cork(net.Conn) (uncork func()) { return nil }
