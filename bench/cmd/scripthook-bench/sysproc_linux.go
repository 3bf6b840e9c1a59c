package main

import "syscall"

// sysProcAttr makes the kernel kill the server when this program dies, so a
// crashed or interrupted run leaves no redis-server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
