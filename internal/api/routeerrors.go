package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/mcp-pdp/pdp/pep"
)

// handleRouteErrors answers echo's own errors (no such route, method not
// allowed, ...) as API errors with their status, instead of letting them
// reach handleError as unknown errors (500, logged at error level: a log
// flood anyone could cause by probing paths).
func (s *Server) handleRouteErrors(c *echo.Context, err error) {
	var ae *pep.RequestError
	var he *echo.HTTPError
	var sc echo.HTTPStatusCoder
	if !errors.As(err, &ae) && !errors.As(err, &he) && errors.As(err, &sc) {
		code := sc.StatusCode()
		if code >= 400 && code <= 599 {
			desc := http.StatusText(code)
			switch code {
			case http.StatusNotFound:
				desc = "no such endpoint: " + c.Request().URL.Path
			case http.StatusMethodNotAllowed:
				desc = "method " + c.Request().Method + " is not allowed here"
			}
			err = apiError(code, strings.ReplaceAll(strings.ToLower(http.StatusText(code)), " ", "_"), desc)
		}
	}
	s.handleError(c, err)
}
