package keys_test

import (
	"errors"
	"fmt"

	"github.com/otpd/otpd/internal/keys"
)

func Example() {
	oldKey, _ := keys.GenerateMasterKey()
	ring, _ := keys.NewKeyring(oldKey)

	// A device seed is sealed and bound to its row.
	blob, _ := ring.Seal([]byte("seed bytes"), []byte("devices:7"))

	// Rotation: a new current key, the old one kept for reading.
	newKey, _ := keys.GenerateMasterKey()
	ring, _ = keys.NewKeyring(newKey, oldKey)
	fmt.Println("needs rotation:", ring.NeedsRotation(blob))
	blob, _ = ring.Reseal(blob, []byte("devices:7"))
	fmt.Println("needs rotation:", ring.NeedsRotation(blob))

	// The same blob under another row's id does not open.
	_, err := ring.Open(blob, []byte("devices:8"))
	fmt.Println("moved blob:", errors.Is(err, keys.ErrDecrypt))
	// Output:
	// needs rotation: true
	// needs rotation: false
	// moved blob: true
}

func ExampleKeyring_HashCode() {
	master, _ := keys.GenerateMasterKey()
	ring, _ := keys.NewKeyring(master)

	hash := ring.HashCode("challenge-A", "042917") // stored instead of the code
	fmt.Println(ring.CheckCode(hash, "challenge-A", "042917"))
	fmt.Println(ring.CheckCode(hash, "challenge-B", "042917"))
	// Output:
	// true
	// false
}

func ExampleParseAPIKey() {
	// Issue: show full to the user once; store id and the secret's hash.
	id, full, _ := keys.NewAPIKey()
	_, secret, _ := keys.ParseAPIKey(full)
	storedHash := keys.HashSecret(secret)

	// Authenticate: parse strictly, look up by id, compare hashes.
	gotID, presented, ok := keys.ParseAPIKey(full)
	fmt.Println(ok, gotID == id, keys.CheckSecret(presented, storedHash))
	// Output: true true true
}
