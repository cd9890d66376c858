package dns

// PIDs are the world's daemons (gdnsd, pdns_recursor), for testenv.RSS.
func (w *World) PIDs() []int {
	var pids []int
	for _, p := range w.gdnsd {
		pids = append(pids, p.cmd.Process.Pid)
	}
	for _, r := range w.Recursors {
		if r.proc != nil {
			pids = append(pids, r.proc.cmd.Process.Pid)
		}
	}
	return pids
}
