// delayproxy: TCP forwarding with a fixed added latency, for the benchmark's realistic
// network (bench/run.py --rtt-ms). Every chunk read on one side is written to the other
// side `-delay` after it was read (one way), in order, so a request/response pair pays
// twice the delay: the round-trip time of a network hop. Chunks do not wait behind each
// other's delay: a pipelined stream keeps its throughput.
//
//	delayproxy -delay 250us -route 127.0.0.1:36534=127.0.0.1:36533 [-route ...]
//
// Built by bench/infra.sh with the Go toolchain (standard library only). It exists
// because kernel traffic shaping (netem) needs privileges this machine does not give.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const prSetTimerSlack = 29 // prctl(PR_SET_TIMERSLACK, ns): this thread's timers fire within ns

func sleep(d time.Duration) {
	ts := syscall.NsecToTimespec(d.Nanoseconds())
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}

type chunk struct {
	data []byte
	read time.Time
}

type routes []string

func (r *routes) String() string     { return strings.Join(*r, ",") }
func (r *routes) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	delay := flag.Duration("delay", 250*time.Microsecond, "added latency, one way")
	var rs routes
	flag.Var(&rs, "route", "listen=upstream, host:port each (repeatable)")
	flag.Parse()
	if len(rs) == 0 {
		log.Fatal("no -route given")
	}
	for _, r := range rs {
		listen, upstream, ok := strings.Cut(r, "=")
		if !ok {
			log.Fatalf("bad -route %q: want listen=upstream", r)
		}
		listener, err := net.Listen("tcp", listen)
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s -> %s, %v each way", listen, upstream, *delay)
		go serve(listener, upstream, *delay)
	}
	select {}
}

func serve(listener net.Listener, upstream string, delay time.Duration) {
	for {
		client, err := listener.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				log.Printf("dial %s: %v", upstream, err)
				client.Close()
				return
			}
			go pipe(client.(*net.TCPConn), server.(*net.TCPConn), delay)
			go pipe(server.(*net.TCPConn), client.(*net.TCPConn), delay)
		}()
	}
}

// pipe copies from -> to, each chunk held until `delay` after it was read. Reading goes on
// while earlier chunks wait, so the delay adds latency, not a cap on throughput.
//
// The writer sleeps on an OS thread of its own with nanosleep and a timer slack of 1 us:
// Go's own timers wake through the network poller, whose granularity here turned 250 us
// into more than a millisecond. What a sleep still overshoots (waking the thread, a busy
// machine) is measured as it goes and taken off the next sleeps, so the delay is right on
// average rather than always long.
func pipe(from, to *net.TCPConn, delay time.Duration) {
	pending := make(chan chunk, 4096)
	go func() {
		defer close(pending)
		for {
			buffer := make([]byte, 64*1024)
			n, err := from.Read(buffer)
			if n > 0 {
				pending <- chunk{buffer[:n], time.Now()}
			}
			if err != nil {
				if err != io.EOF {
					from.Close()
				}
				return
			}
		}
	}()
	runtime.LockOSThread()
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
	var overshoot time.Duration // moving average
	for c := range pending {
		if wait := delay - time.Since(c.read) - overshoot; wait > 0 {
			sleep(wait)
		}
		late := time.Since(c.read) - delay
		overshoot += (late - overshoot) / 16
		if overshoot < 0 {
			overshoot = 0
		}
		if _, err := to.Write(c.data); err != nil {
			to.Close()
			from.Close()
			for range pending { // let the reader finish
			}
			return
		}
	}
	to.CloseWrite()
}
