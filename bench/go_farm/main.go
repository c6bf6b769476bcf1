// A publisher farm in Go for bench/recorder_scale.py: N LiveKit participants, each publishing
// pre-encoded Opus (20 ms packets written by bench/publisher_farm.py's `write_packets`), with
// no encoding at run time, so one core can feed a hundred speakers and more. In `encrypted`
// mode each packet is frame-encrypted as Element Call does (AES-GCM, key index 0, the key
// derived by HKDF from speaker i's key material, farm_key(i) in publisher_farm.py).
//
//	go_farm <n> <ws url> <api key> <api secret> <room> <packets dir> <plain|encrypted>
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const packetDuration = 20 * time.Millisecond

// readPackets reads a file of 2-byte big-endian lengths, each followed by one Opus packet.
func readPackets(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(data) >= 2 {
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("%s: truncated packet", path)
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out, nil
}

// farmKey is publisher_farm.farm_key: the first 16 bytes of sha256("speaker<i>").
func farmKey(i int) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprintf("speaker%d", i)))
	return sum[:16]
}

func token(key, secret, room, identity string) (string, error) {
	grant := &auth.VideoGrant{RoomJoin: true, Room: room}
	grant.SetCanPublish(true)
	grant.SetCanSubscribe(false)
	return auth.NewAccessToken(key, secret).
		SetIdentity(identity).
		SetName(identity).
		SetVideoGrant(grant).
		SetValidFor(time.Hour).
		ToJWT()
}

type speaker struct {
	i         int
	packets   [][]byte
	encrypted bool
	block     cipher.Block
}

func (s *speaker) run(url, key, secret, room string, connecting chan struct{}, stop chan struct{}) {
	identity := fmt.Sprintf("@speaker%d:localhost:S%d", s.i, s.i)
	jwt, err := token(key, secret, room, identity)
	if err != nil {
		fmt.Fprintf(os.Stderr, "speaker %d: token: %v\n", s.i, err)
		return
	}
	var r *lksdk.Room
	connecting <- struct{}{} // a few connects at a time: a hundred at once time out
	for attempt := 1; attempt <= 4; attempt++ {
		r, err = lksdk.ConnectToRoomWithToken(url, jwt, &lksdk.RoomCallback{}, lksdk.WithAutoSubscribe(false))
		if err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "speaker %d: connect attempt %d: %v\n", s.i, attempt, err)
		time.Sleep(time.Duration(attempt) * time.Second)
	}
	<-connecting
	if err != nil {
		return
	}
	defer r.Disconnect()
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		fmt.Fprintf(os.Stderr, "speaker %d: track: %v\n", s.i, err)
		return
	}
	opts := &lksdk.TrackPublicationOptions{Name: "mic", Source: livekit.TrackSource_MICROPHONE}
	if s.encrypted {
		opts.Encryption = livekit.Encryption_GCM
	}
	if _, err := r.LocalParticipant.PublishTrack(track, opts); err != nil {
		fmt.Fprintf(os.Stderr, "speaker %d: publish: %v\n", s.i, err)
		return
	}
	ticker := time.NewTicker(packetDuration)
	defer ticker.Stop()
	pos := (s.i * 137) % len(s.packets) // speakers sharing a voice do not speak in unison
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		data := s.packets[pos]
		pos = (pos + 1) % len(s.packets)
		if s.encrypted {
			if data, err = lksdk.EncryptGCMAudioSampleCustomCipher(data, 0, s.block); err != nil {
				fmt.Fprintf(os.Stderr, "speaker %d: encrypt: %v\n", s.i, err)
				return
			}
		}
		if err := track.WriteSample(media.Sample{Data: data, Duration: packetDuration}, nil); err != nil {
			fmt.Fprintf(os.Stderr, "speaker %d: write: %v\n", s.i, err)
		}
	}
}

func main() {
	if len(os.Args) != 8 {
		fmt.Fprintln(os.Stderr, "usage: go_farm <n> <ws url> <api key> <api secret> <room> <packets dir> <plain|encrypted>")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	url, key, secret, room, dir := os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6]
	encrypted := os.Args[7] == "encrypted"
	voices, _ := filepath.Glob(filepath.Join(dir, "voice-*.opus"))
	if len(voices) == 0 {
		fmt.Fprintf(os.Stderr, "no voice-*.opus in %s\n", dir)
		os.Exit(2)
	}
	packets := make([][][]byte, len(voices))
	for v, path := range voices {
		if packets[v], err = readPackets(path); err != nil || len(packets[v]) == 0 {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(2)
		}
	}
	stop := make(chan struct{})
	connecting := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		s := &speaker{i: i, packets: packets[i%len(packets)], encrypted: encrypted}
		if encrypted {
			derived, err := lksdk.DeriveKeyFromBytes(farmKey(i))
			if err == nil {
				s.block, err = aes.NewCipher(derived)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "speaker %d: key: %v\n", i, err)
				os.Exit(1)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(url, key, secret, room, connecting, stop)
		}()
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	close(stop)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a disconnect that hangs must not hold the bench
	}
}
