//go:build !linux

package serve

import "net"

// Listener returns ln: sendfile(2) with MSG_MORE is Linux's, and
// elsewhere the origin copies bodies through its buffers.
func (s *Server) Listener(ln net.Listener) net.Listener { return ln }
