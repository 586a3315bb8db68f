package relay

import "github.com/hookrelay/hookrelay/protocol"

// writeLoop is the only writer of the tunnel after the handshake. Control frames go first.
// Frames that are ready together are written corked (protocol.Corker), so they share a
// system call.
func (s *session) writeLoop() {
	corker, _ := s.t.(protocol.Corker)
	for {
		var f protocol.Frame
		select {
		case <-s.done:
			s.writeFinal()
			return
		case f = <-s.ctrl:
		default:
			select {
			case <-s.done:
				s.writeFinal()
				return
			case f = <-s.ctrl:
			case f = <-s.out:
			}
		}
		if corker != nil {
			corker.Cork()
		}
		err := s.write(f)
		for n := 1; err == nil && n < writeBurst; n++ {
			if f = s.ready(); f == nil {
				break
			}
			err = s.write(f)
		}
		if corker != nil {
			if uerr := corker.Uncork(); err == nil {
				err = uerr
			}
		}
		if err != nil {
			s.log.Debug("tunnel write failed", "err", err)
			s.stop("write", nil)
			return
		}
	}
}

// ready returns a frame waiting for the writer, control frames first; nil when none is.
func (s *session) ready() protocol.Frame {
	select {
	case f := <-s.ctrl:
		return f
	default:
	}
	select {
	case f := <-s.ctrl:
		return f
	case f := <-s.out:
		return f
	default:
		return nil
	}
}

func (s *session) write(f protocol.Frame) error {
	if w, ok := f.(*protocol.Webhook); ok {
		return protocol.SendWebhook(s.t, w, protocol.DefaultChunk)
	}
	return s.t.WriteFrame(f)
}

func (s *session) writeFinal() {
	s.mu.Lock()
	f := s.final
	s.mu.Unlock()
	if f != nil {
		if err := s.t.WriteFrame(f); err != nil {
			s.log.Debug("final frame not sent", "err", err)
		}
	}
	s.t.Close()
}
