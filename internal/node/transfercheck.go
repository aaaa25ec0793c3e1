package node

// FileTransferCommand reports whether an exec command transfers files
// (scp, sftp-server, rsync... also within a shell command line), with why;
// a command too long or complex to check counts as one. The proxy applies
// it to agentless servers as nodes apply it to their own sessions.
func FileTransferCommand(command string) (why string, found bool) {
	return fileTransferCommand(command)
}
