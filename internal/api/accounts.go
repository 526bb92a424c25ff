package api

import (
	"net/http"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

type application struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	ClientID     string    `json:"client_id"`
	ClientSecret string    `json:"client_secret,omitempty"`
	APIKey       string    `json:"api_key,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

func toApplication(a *store.Application) application {
	return application{ID: a.ID, Name: a.Name, ClientID: a.ClientID, CreatedAt: a.CreatedAt}
}

func (s *Server) createApplication(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	a, err := s.eng.CreateApplication(r.Context(), p, req.Name)
	if err != nil {
		return err
	}
	out := toApplication(&a.Application)
	out.ClientSecret, out.APIKey = a.ClientSecret, a.APIKey
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listApplications(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	apps, err := s.eng.ListApplications(r.Context(), p)
	if err != nil {
		return err
	}
	out := struct {
		Items []application `json:"items"`
	}{Items: make([]application, 0, len(apps))}
	for i := range apps {
		out.Items = append(out.Items, toApplication(&apps[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) deleteApplication(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteApplication(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// userRequest uses pointers so PATCH can tell "absent" from "empty".
type userRequest struct {
	Login      *string `json:"login"`
	Email      *string `json:"email"`
	Phone      *string `json:"phone"`
	ExternalID *string `json:"external_id"`
	FirstName  *string `json:"first_name"`
	LastName   *string `json:"last_name"`
	Language   *string `json:"language"`
	Role       *string `json:"role"`
	Enabled    *bool   `json:"enabled"`
}

func (u userRequest) input() engine.UserInput {
	return engine.UserInput{Login: u.Login, Email: u.Email, Phone: u.Phone, ExternalID: u.ExternalID,
		FirstName: u.FirstName, LastName: u.LastName, Language: u.Language, Role: u.Role, Enabled: u.Enabled}
}

type user struct {
	ID         string    `json:"id"`
	Login      string    `json:"login"`
	Email      string    `json:"email"`
	Phone      string    `json:"phone"`
	ExternalID string    `json:"external_id"`
	FirstName  string    `json:"first_name"`
	LastName   string    `json:"last_name"`
	Language   string    `json:"language"`
	Role       string    `json:"role"`
	Enabled    bool      `json:"enabled"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	Version    int64     `json:"version"`
}

func toUser(u *store.User) user {
	return user{ID: u.ID, Login: u.Login, Email: u.Email, Phone: u.Phone, ExternalID: u.ExternalID,
		FirstName: u.FirstName, LastName: u.LastName, Language: u.Language, Role: u.Role,
		Enabled: u.Enabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, Version: u.Version}
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req userRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	u, err := s.eng.CreateUser(r.Context(), p, req.input())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, toUser(u))
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	u, err := s.eng.GetUser(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(u))
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	limit, verr := pageLimit(q, 50)
	if verr != nil {
		return verr
	}
	after := ""
	if c := q.Get("cursor"); c != "" {
		id, ok := decodeCursor(c)
		if !ok {
			return &engine.ValidationError{Field: "cursor", Message: "is not a cursor this API returned"}
		}
		after = id
	}
	users, err := s.eng.ListUsers(r.Context(), p, after, limit)
	if err != nil {
		return err
	}
	out := struct {
		Items      []user `json:"items"`
		NextCursor string `json:"next_cursor,omitempty"`
	}{Items: make([]user, 0, len(users))}
	for i := range users {
		out.Items = append(out.Items, toUser(&users[i]))
	}
	if len(users) == limit {
		out.NextCursor = encodeCursor(users[len(users)-1].ID)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req userRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	u, err := s.eng.UpdateUser(r.Context(), p, r.PathValue("id"), req.input())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(u))
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteUser(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
