// Vitessce's hooks and view chrome for plugin views (the same module @vitessce/all renders with).
export * from '@vitessce/vit-s';
