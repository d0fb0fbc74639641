package e2e

import (
	"os/exec"
	"syscall"
)

// orphanGuard makes the kernel kill the child if this test binary dies without running its
// cleanups (a panic, a -timeout abort), so no server outlives the test.
func orphanGuard(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
