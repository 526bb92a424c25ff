package otpauth

// A small QR decoder for the tests, written from ISO/IEC 18004 and independent of the encoder
// (boombuler/barcode): it reads the modules from the picture, the format information, removes
// the mask, walks the data modules in the standard zigzag, de-interleaves the Reed–Solomon
// blocks, checks every block's error-correction bytes with its own Reed–Solomon arithmetic, and
// parses the data segments. It handles what an undamaged, unrotated code of versions 1–15 at
// any error-correction level needs; it corrects no errors (a code it reads must be perfect).

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
)

// grid is a module matrix read from a picture: dark[y][x].
type grid [][]bool

// sampleImage reads a QR code's modules from a rendered picture: it finds the code by its first
// dark pixel (the top-left corner of the top-left finder pattern), measures the module size from
// the finder's 7-module-wide top edge, and samples the middle of every module.
func sampleImage(img image.Image) (grid, error) {
	b := img.Bounds()
	dark := func(x, y int) bool {
		r, g, bl, _ := img.At(x, y).RGBA()
		return r+g+bl < 3*0x8000
	}
	x0, y0 := -1, -1
	for y := b.Min.Y; y < b.Max.Y && x0 < 0; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if dark(x, y) {
				x0, y0 = x, y
				break
			}
		}
	}
	if x0 < 0 {
		return nil, errors.New("no dark pixel")
	}
	run := 0
	for x := x0; x < b.Max.X && dark(x, y0); x++ {
		run++
	}
	if run%7 != 0 {
		return nil, fmt.Errorf("finder edge is %d px, not a multiple of 7", run)
	}
	scale := run / 7
	// The code ends where the last dark pixel of row y0 is (the top-right finder's edge).
	x1 := x0
	for x := b.Max.X - 1; x > x0; x-- {
		if dark(x, y0) {
			x1 = x
			break
		}
	}
	width := x1 - x0 + 1
	if width%scale != 0 {
		return nil, fmt.Errorf("code width %d px is not a multiple of the module size %d", width, scale)
	}
	n := width / scale
	g := make(grid, n)
	for y := range n {
		g[y] = make([]bool, n)
		for x := range n {
			g[y][x] = dark(x0+x*scale+scale/2, y0+y*scale+scale/2)
		}
	}
	return g, nil
}

func decodePNG(data []byte) (string, grid, error) {
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return "", nil, err
	}
	g, err := sampleImage(img)
	if err != nil {
		return "", nil, err
	}
	s, err := decodeGrid(g)
	return s, g, err
}

// Error-correction blocks per version (1–15) and level: error-correction bytes per block, and
// (count, data bytes) of the two block groups. ISO/IEC 18004:2015 Table 9.
type ecBlocks struct {
	ec             int
	n1, d1, n2, d2 int
}

var blockTable = map[byte][16]ecBlocks{ // level (format bits) → version
	0b01: { // L
		{}, {7, 1, 19, 0, 0}, {10, 1, 34, 0, 0}, {15, 1, 55, 0, 0}, {20, 1, 80, 0, 0}, {26, 1, 108, 0, 0},
		{18, 2, 68, 0, 0}, {20, 2, 78, 0, 0}, {24, 2, 97, 0, 0}, {30, 2, 116, 0, 0}, {18, 2, 68, 2, 69},
		{20, 4, 81, 0, 0}, {24, 2, 92, 2, 93}, {26, 4, 107, 0, 0}, {30, 3, 115, 1, 116}, {22, 5, 87, 1, 88},
	},
	0b00: { // M
		{}, {10, 1, 16, 0, 0}, {16, 1, 28, 0, 0}, {26, 1, 44, 0, 0}, {18, 2, 32, 0, 0}, {24, 2, 43, 0, 0},
		{16, 4, 27, 0, 0}, {18, 4, 31, 0, 0}, {22, 2, 38, 2, 39}, {22, 3, 36, 2, 37}, {26, 4, 43, 1, 44},
		{30, 1, 50, 4, 51}, {22, 6, 36, 2, 37}, {22, 8, 37, 1, 38}, {24, 4, 40, 5, 41}, {24, 5, 41, 5, 42},
	},
	0b11: { // Q
		{}, {13, 1, 13, 0, 0}, {22, 1, 22, 0, 0}, {18, 2, 17, 0, 0}, {26, 2, 24, 0, 0}, {18, 2, 15, 2, 16},
		{24, 4, 19, 0, 0}, {18, 2, 14, 4, 15}, {22, 4, 18, 2, 19}, {20, 4, 16, 4, 17}, {24, 6, 19, 2, 20},
		{28, 4, 22, 4, 23}, {26, 4, 20, 6, 21}, {24, 8, 20, 4, 21}, {20, 11, 16, 5, 17}, {30, 5, 24, 7, 25},
	},
	0b10: { // H
		{}, {17, 1, 9, 0, 0}, {28, 1, 16, 0, 0}, {22, 2, 13, 0, 0}, {16, 4, 9, 0, 0}, {22, 2, 11, 2, 12},
		{28, 4, 15, 0, 0}, {26, 4, 13, 1, 14}, {26, 4, 14, 2, 15}, {24, 4, 12, 4, 13}, {28, 6, 15, 2, 16},
		{24, 3, 12, 8, 13}, {28, 7, 14, 4, 15}, {22, 12, 11, 4, 12}, {24, 11, 12, 5, 13}, {24, 11, 12, 7, 13},
	},
}

// alignment lists the centre coordinates of the alignment patterns per version.
var alignment = [16][]int{
	nil, nil, {6, 18}, {6, 22}, {6, 26}, {6, 30}, {6, 34}, {6, 22, 38}, {6, 24, 42}, {6, 26, 46},
	{6, 28, 50}, {6, 30, 54}, {6, 32, 58}, {6, 34, 62}, {6, 26, 46, 66}, {6, 26, 48, 70},
}

// formatBCH returns the 15 format bits for 5 data bits (error-correction level, mask).
func formatBCH(data int) int {
	rem := data << 10
	for i := 14; i >= 10; i-- {
		if rem&(1<<i) != 0 {
			rem ^= 0x537 << (i - 10)
		}
	}
	return (data<<10 | rem) ^ 0x5412
}

// functionModules marks what is not data: finders with separators and format areas, timing
// patterns, alignment patterns, version information, the dark module.
func functionModules(n, version int) grid {
	f := make(grid, n)
	for i := range f {
		f[i] = make([]bool, n)
	}
	rect := func(x0, y0, w, h int) {
		for y := y0; y < y0+h; y++ {
			for x := x0; x < x0+w; x++ {
				if x >= 0 && y >= 0 && x < n && y < n {
					f[y][x] = true
				}
			}
		}
	}
	rect(0, 0, 9, 9)   // top-left finder, separator, format bits
	rect(n-8, 0, 8, 9) // top-right finder, separator, format bits
	rect(0, n-8, 9, 8) // bottom-left finder, separator, format bits, dark module
	rect(6, 0, 1, n)   // timing
	rect(0, 6, n, 1)
	pos := alignment[version]
	for _, cy := range pos {
		for _, cx := range pos {
			if (cx == 6 && cy == 6) || (cx == 6 && cy == pos[len(pos)-1]) || (cy == 6 && cx == pos[len(pos)-1]) {
				continue // would overlap a finder
			}
			rect(cx-2, cy-2, 5, 5)
		}
	}
	if version >= 7 {
		rect(n-11, 0, 3, 6)
		rect(0, n-11, 6, 3)
	}
	return f
}

// masked reports whether mask pattern m inverts the module at column x, row y.
func masked(m, x, y int) bool {
	switch m {
	case 0:
		return (x+y)%2 == 0
	case 1:
		return y%2 == 0
	case 2:
		return x%3 == 0
	case 3:
		return (x+y)%3 == 0
	case 4:
		return (x/3+y/2)%2 == 0
	case 5:
		return x*y%2+x*y%3 == 0
	case 6:
		return (x*y%2+x*y%3)%2 == 0
	default:
		return ((x+y)%2+x*y%3)%2 == 0
	}
}

// decodeGrid decodes a perfect QR code of version 1–15.
func decodeGrid(g grid) (string, error) {
	n := len(g)
	if n < 21 || (n-17)%4 != 0 {
		return "", fmt.Errorf("%d modules is not a QR code size", n)
	}
	version := (n - 17) / 4
	if version > 15 {
		return "", fmt.Errorf("version %d is beyond this decoder", version)
	}
	bit := func(x, y int) int {
		if g[y][x] {
			return 1
		}
		return 0
	}
	// Format information, first copy (around the top-left finder), bit 0 = least significant.
	var raw int
	for i := 0; i <= 5; i++ {
		raw |= bit(8, i) << i
	}
	raw |= bit(8, 7)<<6 | bit(8, 8)<<7 | bit(7, 8)<<8
	for i := 9; i < 15; i++ {
		raw |= bit(14-i, 8) << i
	}
	// The second copy must agree.
	var raw2 int
	for i := 0; i < 8; i++ {
		raw2 |= bit(n-1-i, 8) << i
	}
	for i := 8; i < 15; i++ {
		raw2 |= bit(8, n-15+i) << i
	}
	if raw != raw2 {
		return "", fmt.Errorf("the two format copies differ: %015b %015b", raw, raw2)
	}
	format := -1
	for d := range 32 {
		if formatBCH(d) == raw {
			format = d
		}
	}
	if format < 0 {
		return "", fmt.Errorf("format bits %015b are not a valid codeword", raw)
	}
	level, mask := byte(format>>3), format&7
	if !g[n-8][8] {
		return "", errors.New("the dark module is light")
	}

	// Read the data modules in the zigzag order, unmasking.
	fn := functionModules(n, version)
	var bits []byte
	for right := n - 1; right >= 1; right -= 2 {
		if right == 6 {
			right = 5
		}
		for vert := range n {
			for j := range 2 {
				x := right - j
				y := vert
				if (right+1)&2 == 0 {
					y = n - 1 - vert
				}
				if fn[y][x] {
					continue
				}
				v := g[y][x] != masked(mask, x, y)
				var b byte
				if v {
					b = 1
				}
				bits = append(bits, b)
			}
		}
	}
	bt := blockTable[level][version]
	total := bt.n1*(bt.d1+bt.ec) + bt.n2*(bt.d2+bt.ec)
	if len(bits)/8 != total {
		return "", fmt.Errorf("version %d has %d data modules (%d bytes), the table says %d bytes", version, len(bits), len(bits)/8, total)
	}
	stream := make([]byte, total)
	for i := range stream {
		for j := range 8 {
			stream[i] = stream[i]<<1 | bits[i*8+j]
		}
	}
	// De-interleave: data bytes round-robin over the blocks, then the error-correction bytes.
	type block struct{ data, ec []byte }
	var blocks []*block
	for range bt.n1 {
		blocks = append(blocks, &block{data: make([]byte, 0, bt.d1)})
	}
	for range bt.n2 {
		blocks = append(blocks, &block{data: make([]byte, 0, bt.d2)})
	}
	size := func(i int) int {
		if i < bt.n1 {
			return bt.d1
		}
		return bt.d2
	}
	k := 0
	for i := 0; i < max(bt.d1, bt.d2); i++ {
		for bi, b := range blocks {
			if i < size(bi) {
				b.data = append(b.data, stream[k])
				k++
			}
		}
	}
	for range bt.ec {
		for _, b := range blocks {
			b.ec = append(b.ec, stream[k])
			k++
		}
	}
	var data []byte
	for bi, b := range blocks {
		if want := rsRemainder(b.data, bt.ec); !bytes.Equal(want, b.ec) {
			return "", fmt.Errorf("block %d: error-correction bytes do not match its data", bi)
		}
		data = append(data, b.data...)
	}
	return parseSegments(data, version)
}

// GF(256) with the QR polynomial x^8 + x^4 + x^3 + x^2 + 1.
func gfMul(a, b byte) byte {
	var p byte
	for b > 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1d
		}
		b >>= 1
	}
	return p
}

// rsRemainder returns the ec Reed–Solomon check bytes of data: the remainder of data·x^ec by the
// generator (x − α^0)(x − α^1)…(x − α^(ec−1)), α = 2.
func rsRemainder(data []byte, ec int) []byte {
	gen := []byte{1}
	root := byte(1)
	for range ec {
		next := make([]byte, len(gen)+1)
		for i, c := range gen {
			next[i] ^= c
			next[i+1] ^= gfMul(c, root)
		}
		gen = next
		root = gfMul(root, 2)
	}
	rem := make([]byte, ec)
	for _, d := range data {
		factor := d ^ rem[0]
		copy(rem, rem[1:])
		rem[ec-1] = 0
		for i := range ec {
			rem[i] ^= gfMul(gen[i+1], factor)
		}
	}
	return rem
}

// parseSegments reads numeric, alphanumeric and byte segments up to the terminator.
func parseSegments(data []byte, version int) (string, error) {
	pos := 0
	read := func(n int) (int, error) {
		if pos+n > len(data)*8 {
			return 0, errors.New("the data ends inside a segment")
		}
		v := 0
		for range n {
			v = v<<1 | int(data[pos/8]>>(7-pos%8)&1)
			pos++
		}
		return v, nil
	}
	var out []byte
	const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
	for {
		if len(data)*8-pos < 4 {
			break
		}
		mode, _ := read(4)
		if mode == 0 {
			break
		}
		var countBits int
		switch mode {
		case 1:
			countBits = 10
		case 2:
			countBits = 9
		case 4:
			countBits = 8
		default:
			return "", fmt.Errorf("segment mode %04b is not supported", mode)
		}
		if version >= 10 {
			countBits += 2
			if mode == 4 {
				countBits += 6 // byte mode: 16 bits from version 10
			}
		}
		count, err := read(countBits)
		if err != nil {
			return "", err
		}
		switch mode {
		case 4:
			for range count {
				v, err := read(8)
				if err != nil {
					return "", err
				}
				out = append(out, byte(v))
			}
		case 2:
			for i := 0; i < count; i += 2 {
				if count-i >= 2 {
					v, err := read(11)
					if err != nil {
						return "", err
					}
					out = append(out, alnum[v/45], alnum[v%45])
				} else {
					v, err := read(6)
					if err != nil {
						return "", err
					}
					out = append(out, alnum[v])
				}
			}
		case 1:
			for i := 0; i < count; i += 3 {
				digits := min(3, count-i)
				v, err := read([]int{0, 4, 7, 10}[digits])
				if err != nil {
					return "", err
				}
				out = append(out, fmt.Sprintf("%0*d", digits, v)...)
			}
		}
	}
	return string(out), nil
}
