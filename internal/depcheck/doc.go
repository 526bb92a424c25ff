// Package depcheck holds no code, only a test that keeps banned packages out
// of otpd. It parses the imports of every non-test Go file in the module and
// fails, naming the file, when one imports:
//
//   - math/rand or math/rand/v2: codes, tokens and secrets must come from
//     crypto/rand, and a predictable generator must not be one import away;
//   - gopkg.in/yaml.v3: archived; configuration uses go.yaml.in/yaml/v3;
//   - github.com/gorilla/csrf: open advisory; the console uses
//     http.CrossOriginProtection.
//
// Tests may use math/rand (seeded, reproducible inputs).
package depcheck
