// pemdecode: Go's encoding/pem.Decode as kube-apiserver and the controller-manager use it,
// for kubepki's differential test (tests/pem_go.rs). Reads length-prefixed inputs (uint32
// little endian) from the file named by its argument; prints one line per input: each block
// Go's loop `for { b, rest = pem.Decode(rest) }` finds, as hex(type):has-headers:hex(bytes):offset
// of the rest, separated by ';'.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	r := bufio.NewReader(f)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for {
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			panic(err)
		}
		rest := buf
		for {
			b, r2 := pem.Decode(rest)
			if b == nil {
				break
			}
			headers := 0
			if len(b.Headers) > 0 {
				headers = 1
			}
			fmt.Fprintf(w, "%s:%d:%s:%d;", hex.EncodeToString([]byte(b.Type)), headers, hex.EncodeToString(b.Bytes), len(buf)-len(r2))
			rest = r2
		}
		fmt.Fprintln(w)
	}
}
