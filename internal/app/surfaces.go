package app

// mountSurfaces mounts the vendor dialects on the API server. Each surface adds its one line
// here; its package holds the translation, the engine holds the rules.
func (a *App) mountSurfaces() error {
	return nil
}
