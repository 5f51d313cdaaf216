// tlogclient reads one trailseal tenant's log the way any C2SP tlog-tiles client does,
// with the reference Go packages golang.org/x/mod/sumdb/note and sumdb/tlog: it opens the
// signed checkpoint with the verifier key, recomputes the tree's root from the tiles,
// checks every entry bundle against the leaf hashes, and checks one inclusion proof.
//
// Usage: tlogclient BASE_URL TOKEN VERIFIER_KEY   (BASE_URL ends in /v1/log/)
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type client struct{ base, token string }

func (c client) get(path string) ([]byte, error) {
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, nil
}

// C2SP paths drop the tile height that sumdb writes: tile/8/L/N -> tile/L/N.
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
}

func (c client) Height() int { return 8 }

func (c client) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := c.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (c client) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: tlogclient BASE_URL TOKEN VERIFIER_KEY")
	}
	c := client{os.Args[1], os.Args[2]}
	verifier, err := note.NewVerifier(os.Args[3])
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := c.get("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint body too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root: %v", err)
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}

	// TileHashReader authenticates every tile it reads against the tree's root.
	hashes := tlog.TileHashReader(tree, c)
	computed, err := tlog.TreeHash(size, hashes)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if computed != root {
		fail("root from tiles %v differs from checkpoint %v", computed, root)
	}

	// Entry bundles: each entry's record hash is the leaf hash held by the tiles.
	entries := int64(0)
	for index := int64(0); index*256 < size; index++ {
		width := size - index*256
		path := fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(
			tlog.Tile{H: 8, L: 0, N: index, W: 256}.Path(), "tile/8/0/"))
		if width < 256 {
			path = fmt.Sprintf("tile/entries/%s", strings.TrimPrefix(
				tlog.Tile{H: 8, L: 0, N: index, W: int(width)}.Path(), "tile/8/0/"))
		}
		bundle, err := c.get(path)
		if err != nil {
			fail("%v", err)
		}
		for len(bundle) > 0 {
			if len(bundle) < 2 {
				fail("truncated entry bundle %s", path)
			}
			length := int(bundle[0])<<8 | int(bundle[1])
			entry := bundle[2 : 2+length]
			bundle = bundle[2+length:]
			leaf, err := hashes.ReadHashes([]int64{tlog.StoredHashIndex(0, entries)})
			if err != nil {
				fail("leaf %d: %v", entries, err)
			}
			if tlog.RecordHash(entry) != leaf[0] {
				fail("entry %d does not hash to its leaf", entries)
			}
			var event map[string]any
			if err := json.NewDecoder(bytes.NewReader(entry)).Decode(&event); err != nil {
				fail("entry %d is not JSON: %v", entries, err)
			}
			entries++
		}
	}

	// One inclusion proof, planned and checked by the reference code.
	index := size / 2
	proof, err := tlog.ProveRecord(size, index, hashes)
	if err != nil {
		fail("prove record: %v", err)
	}
	leaf, err := hashes.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
	if err != nil {
		fail("%v", err)
	}
	if err := tlog.CheckRecord(proof, size, root, index, leaf[0]); err != nil {
		fail("check record: %v", err)
	}
	out, _ := json.Marshal(map[string]any{
		"origin": lines[0], "size": size, "root": lines[2], "entries": entries,
		"signer": n.Sigs[0].Name,
	})
	fmt.Println(string(out))
}
