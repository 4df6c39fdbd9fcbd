// Package serve runs the agent's small HTTP servers (metrics, health) on a listener until their
// context ends.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// HTTP serves h on l until ctx is done, then shuts down gracefully (closing after 5 s). It
// returns nil after a shutdown and the server's error otherwise.
func HTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				_ = srv.Close()
			}
		case <-stop:
		}
	}()
	err := srv.Serve(l)
	close(stop)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
