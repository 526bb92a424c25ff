package otpauth

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// QuietZone is the light border around a QR code, in modules. ISO/IEC 18004 asks for four;
// without it many scanners do not find the code on a dark page or screen.
const QuietZone = 4

// Matrix is a QR code's modules, without the quiet zone.
type Matrix struct {
	Size int
	dark []bool
}

// Dark reports whether the module in column x, row y is dark. Outside the code (the quiet
// zone and beyond) every module is light.
func (m *Matrix) Dark(x, y int) bool {
	if x < 0 || y < 0 || x >= m.Size || y >= m.Size {
		return false
	}
	return m.dark[y*m.Size+x]
}

// Encode returns the QR code of content: byte mode, error correction level M (15 % of the
// code may be damaged), the smallest version that fits.
func Encode(content string) (*Matrix, error) {
	code, err := qr.Encode(content, qr.M, qr.Unicode)
	if err != nil {
		return nil, fmt.Errorf("otpauth: qr: %w", err)
	}
	b := code.Bounds()
	m := &Matrix{Size: b.Dx(), dark: make([]bool, b.Dx()*b.Dy())}
	for y := range b.Dy() {
		for x := range b.Dx() {
			r, _, _, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA()
			m.dark[y*m.Size+x] = r < 0x8000
		}
	}
	return m, nil
}

// DefaultScale is the PNG's pixels per module: a version 10 code (the size of a SHA-512 key's
// URI) comes out at 65 × 6 = 390 pixels square.
const DefaultScale = 6

// PNG renders content as a black-on-white QR code, scale pixels per module (DefaultScale when
// scale < 1), with the quiet zone. The image is 1 bit per pixel.
func PNG(content string, scale int) ([]byte, error) {
	m, err := Encode(content)
	if err != nil {
		return nil, err
	}
	if scale < 1 {
		scale = DefaultScale
	}
	side := (m.Size + 2*QuietZone) * scale
	img := image.NewPaletted(image.Rect(0, 0, side, side), color.Palette{color.White, color.Black})
	for y := range side {
		for x := range side {
			if m.Dark(x/scale-QuietZone, y/scale-QuietZone) {
				img.SetColorIndex(x, y, 1)
			}
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("otpauth: png: %w", err)
	}
	return buf.Bytes(), nil
}

// Terminal renders content as text for a terminal: each character is one module wide and two
// high, drawn with the half-block characters ▀ ▄ █ and space, with the quiet zone.
//
// Terminals mostly show light text on a dark background, so by default a light module is
// drawn (a block) and a dark one left blank: the code then reads dark-on-light as scanners
// expect. invert draws the dark modules instead, for dark text on a light background.
func Terminal(content string, invert bool) (string, error) {
	m, err := Encode(content)
	if err != nil {
		return "", err
	}
	ink := func(x, y int) bool { return m.Dark(x, y) == invert }
	var b strings.Builder
	lo, hi := -QuietZone, m.Size+QuietZone
	for y := lo; y < hi; y += 2 {
		for x := lo; x < hi; x++ {
			top := ink(x, y)
			bottom := y+1 < hi && ink(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}
