package testenv

import "net"

// FreePort asks the kernel for a free TCP port on 127.0.0.1. Another process
// could take it before the caller binds it; on loopback in a test run that
// race is rare enough, and a failed bind is reported, never hidden.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
