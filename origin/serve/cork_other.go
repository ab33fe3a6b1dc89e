//go:build !linux

package serve

import "net"

const corkAbove = 8 << 10

// cork is Linux's TCP_CORK; elsewhere responses are sent uncorked.
func cork(net.Conn) (uncork func()) { return nil }
