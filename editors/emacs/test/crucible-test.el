;;; crucible-test.el --- Emacs + eglot + the real Crucible server, in batch  -*- lexical-binding: t; -*-

;; Run by run.py (beside this file), which starts the fake providers, puts a `crucible-lsp'
;; for this checkout on PATH and isolates HOME/XDG; see its docstring.  Each test opens a
;; file in a project folder of its own (so each gets its own server), types with
;; `execute-kbd-macro' (so the command loop runs post-command-hook and the real key maps,
;; TAB included), and waits with `accept-process-output' (timers and process output run),
;; always with a deadline.  After each test, neither *Messages* nor the eglot events buffer
;; may show an error.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'eglot)
(load (expand-file-name "../crucible.el" (file-name-directory (or load-file-name buffer-file-name)))
      nil t)

(defvar crucible-test--root (getenv "CRUCIBLE_TEST_DIR"))
(defvar crucible-test--counter 0)

(setq eglot-sync-connect 10
      eglot-autoshutdown nil
      eglot-send-changes-idle-time 0.05
      ;; Emacs 29+ eglot: no confirmation prompts in batch.
      eglot-confirm-server-initiated-edits nil)

(defun crucible-test--wait (predicate &optional seconds)
  "Run timers and process output until PREDICATE holds or SECONDS (default 10) pass.
Return PREDICATE's last value."
  (let ((deadline (+ (float-time) (or seconds 10))) value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) deadline))
      (accept-process-output nil 0.02))
    value))

(defun crucible-test--pause (seconds)
  "Let timers and process output run for SECONDS."
  (let ((deadline (+ (float-time) seconds)))
    (while (< (float-time) deadline) (accept-process-output nil 0.01))))

(defun crucible-test--type (keys)
  "Type KEYS (a `kbd' string) through the command loop."
  (execute-kbd-macro (kbd keys)))

(defun crucible-test--errors (server messages-start)
  "Error lines in *Messages* since MESSAGES-START and error replies in SERVER's events
buffer, except RequestCancelled (-32800: a stale request the editor cancelled)."
  (append
   (with-current-buffer (messages-buffer)
     (cl-loop for line in (split-string (buffer-substring-no-properties
                                         (min messages-start (point-max)) (point-max))
                                        "\n" t)
              when (string-match-p "error\\|warn\\|timed out\\|unknown\\|server reports" (downcase line))
              collect (concat "*Messages*: " line)))
   (when (and server (buffer-live-p (jsonrpc-events-buffer server)))
     (with-current-buffer (jsonrpc-events-buffer server)
       (save-excursion
         (goto-char (point-min))
         (cl-loop while (re-search-forward ":error[ \t\n]*(:code[ \t\n]+\\(-?[0-9]+\\)" nil t)
                  unless (equal (match-string 1) "-32800")
                  collect (concat "events: "
                                  (buffer-substring-no-properties
                                   (save-excursion (re-search-backward "^\\[" nil t)
                                                   (point))
                                   (line-end-position)))))))))

(defun crucible-test--dump (server)
  "Print the ends of SERVER's events buffer and of every eglot stderr buffer."
  (dolist (buffer (buffer-list))
    (when (or (and server (eq buffer (ignore-errors (jsonrpc-events-buffer server))))
              (string-match-p "EGLOT.*stderr" (buffer-name buffer)))
      (with-current-buffer buffer
        (message "----- %s (end)\n%s" (buffer-name)
                 (buffer-substring-no-properties (max (point-min) (- (point-max) 4000))
                                                 (point-max)))))))

(defun crucible-test--events (server)
  "The text of SERVER's eglot events buffer."
  (with-current-buffer (jsonrpc-events-buffer server) (buffer-string)))

(defun crucible-test--sent (server method)
  "The entries of SERVER's events buffer that the client sent with METHOD, as text."
  (cl-remove-if-not
   (lambda (entry) (and (string-prefix-p "client-" entry)
                        (string-match-p (format ":method \"%s\"" (regexp-quote method))
                                        entry)))
   (split-string (crucible-test--events server) "^\\[" t)))

(defmacro crucible-test--with-buffer (spec &rest body)
  "Open a Python file with TEXT in a new project, connect eglot, run BODY there.
SPEC is (TEXT &key contact crucible): CONTACT overrides the server program list (default:
what `crucible-eglot-setup' gives python-mode); CRUCIBLE non-nil turns on `crucible-mode'
through eglot's hook.  Binds `server' in BODY.  Afterwards: no errors, server shut down."
  (declare (indent 1))
  (let ((text (car spec)) (contact (plist-get (cdr spec) :contact))
        (crucible (plist-get (cdr spec) :crucible)))
    `(let* ((dir (file-name-as-directory
                  (expand-file-name (format "project-%d" (cl-incf crucible-test--counter))
                                    crucible-test--root)))
            (file (expand-file-name "main.py" dir))
            (messages-start (with-current-buffer (messages-buffer) (point-max)))
            (eglot-server-programs (copy-sequence eglot-server-programs))
            (eglot-managed-mode-hook (if ,crucible '(crucible-eglot-managed) nil))
            server passed)
       (make-directory dir t)
       ;; A real repository: project.el lists its files through git (eglot asks it when a
       ;; server watches files, as ruff does).
       (should (= 0 (call-process "git" nil nil nil "init" "-q" dir)))
       (with-temp-file file (insert ,text))
       (let ((contact ,contact))
         (if contact
             (push (cons '(python-mode) contact) eglot-server-programs)
           (crucible-eglot-setup)))
       (find-file file)
       (unwind-protect
           (progn
             (python-mode)
             (goto-char (point-max))
             (apply #'eglot (eglot--guess-contact))
             (setq server (crucible-test--wait #'eglot-current-server 20))
             (should server)
             (should (crucible-test--wait (lambda () (eglot-managed-p)) 10))
             ,@body
             (should-not (crucible-test--errors server messages-start))
             (setq passed t))
         (unless passed (crucible-test--dump server))
         (when (and server (jsonrpc-running-p server))
           (ignore-errors (eglot-shutdown server nil 5)))
         (set-buffer-modified-p nil)
         (kill-buffer (find-buffer-visiting file))))))

(defun crucible-test--shown (expected)
  "Wait until the overlay shows EXPECTED; return what it shows."
  (crucible-test--wait (lambda () (equal (crucible-suggestion) expected)) 10)
  (crucible-suggestion))

;;;; The plain eglot set-up (no crucible-mode): the completion menu

(ert-deftest crucible-capf-inserts-the-suggestion ()
  "eglot's `completion-at-point' offers Crucible's suggestion and inserts all of it."
  (let ((crucible-advertise-inline-completion nil))
    (crucible-test--with-buffer ("def add(a, b):\n    " :contact '("crucible-lsp" "--stdio"))
      (should (equal (plist-get (eglot--server-info server) :name) "crucible"))
      (let ((completion-cycle-threshold nil))
        (should (crucible-test--wait
                 (lambda ()
                   (completion-at-point)
                   (string-suffix-p "return a + b" (buffer-string)))
                 10)))
      (should (equal (buffer-string) "def add(a, b):\n    return a + b")))))

;;;; crucible-mode: the overlay

(ert-deftest crucible-overlay-shows-the-provider-answer-and-tab-accepts-it ()
  "Typing shows the provider's answer after the cursor; TAB inserts exactly it."
  (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
    (should crucible-mode)
    (crucible-test--type "SPC SPC SPC SPC")
    (should (equal (crucible-test--shown "return a + b") "return a + b"))
    (should (= (point) (point-max)))           ; ghost text is not buffer text
    (should (equal (buffer-string) "def add(a, b):\n    "))
    (crucible-test--type "TAB")
    (should (equal (buffer-string) "def add(a, b):\n    return a + b"))
    (should-not (crucible-suggestion))))

(ert-deftest crucible-accept-word-inserts-one-word-and-keeps-the-rest ()
  (crucible-test--with-buffer ("def scale(values, factor):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (should (equal (crucible-test--shown "result = [v * factor for v in values]")
                   "result = [v * factor for v in values]"))
    (crucible-test--type "M-f")
    (should (equal (buffer-string) "def scale(values, factor):\n    result"))
    (should (equal (crucible-suggestion) " = [v * factor for v in values]"))
    (crucible-test--type "M-f")
    (should (equal (crucible-suggestion) " [v * factor for v in values]"))
    (crucible-test--type "C-e")                 ; accept line: the rest of it
    (should (equal (buffer-string)
                   "def scale(values, factor):\n    result = [v * factor for v in values]"))
    (should-not (crucible-suggestion))))

(ert-deftest crucible-multi-line-suggestion-line-by-line ()
  "A two-line suggestion shows whole; C-e takes its first line, then the line
break with the indentation, then the last line."
  (crucible-test--with-buffer ("def pair(a, b):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (should (equal (crucible-test--shown "first = a\n    return first, b")
                   "first = a\n    return first, b"))
    (crucible-test--type "C-e")
    (should (equal (crucible-suggestion) "\n    return first, b"))
    (crucible-test--type "C-e")
    (should (equal (crucible-suggestion) "return first, b"))
    (crucible-test--type "TAB")
    (should (equal (buffer-string) "def pair(a, b):\n    first = a\n    return first, b"))))

(ert-deftest crucible-suggestion-over-an-auto-closed-bracket ()
  "The item replaces the `)' after the cursor: drawn over it, one `)' after TAB."
  (crucible-test--with-buffer ("x = 1\n" :crucible t)
    (insert ")")
    (backward-char)
    (crucible-test--type "t o t a l SPC = SPC a d d (")
    (should (equal (buffer-substring (line-beginning-position) (line-end-position))
                   "total = add()"))
    (should (equal (crucible-test--shown "1, 2)") "1, 2)"))
    (should (= (overlay-end crucible--overlay) (1+ (point))))  ; covers the `)'
    (crucible-test--type "TAB")
    (should (equal (buffer-substring (line-beginning-position) (line-end-position))
                   "total = add(1, 2)"))))

(ert-deftest crucible-typing-a-matching-character-keeps-the-rest ()
  (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (crucible-test--shown "return a + b")
    (crucible-test--type "r e")
    ;; At once, before any reply could come: the rest of the same suggestion.
    (should (equal (crucible-suggestion) "turn a + b"))))

(ert-deftest crucible-typing-another-character-clears-at-once ()
  (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (crucible-test--shown "return a + b")
    (crucible-test--type "x")
    (should-not (crucible-suggestion))
    (should-not crucible--suggestion-active)))

(ert-deftest crucible-dismiss-and-moving-clear-it ()
  (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (crucible-test--shown "return a + b")
    (crucible-test--type "C-g")
    (should-not (crucible-suggestion))
    (crucible-test--type "SPC")
    (crucible-test--type "DEL")
    (crucible-test--shown "return a + b")
    (should (eq (key-binding (kbd "TAB")) 'crucible-accept))
    (crucible-test--type "C-a")
    (should-not (crucible-suggestion))
    ;; TAB without a suggestion is TAB again (python-mode indents).
    (should-not crucible--suggestion-active)
    (should (eq (key-binding (kbd "TAB")) 'indent-for-tab-command))))

(ert-deftest crucible-never-shows-a-stale-suggestion ()
  "With a provider answering after 300 ms and keys every 0-400 ms, the overlay never
shows a suggestion made for another line than the current one."
  (let* ((crucible-settings
          `(:providers [(:name "slow" :kind "ollama" :base_url ,(getenv "CRUCIBLE_TEST_SLOW_URL")
                         :model ,(getenv "CRUCIBLE_TEST_MODEL"))]))
         (samples 0) (shown 0) (wrong nil))
    (crucible-test--with-buffer ("x = 1\n" :crucible t)
      (crucible-test--type "n SPC = SPC")
      (random "crucible")
      (dotimes (i 24)
        (crucible-test--type (number-to-string (% i 10)))
        (let ((deadline (+ (float-time) (/ (random 400) 1000.0))))
          (while (< (float-time) deadline)
            (accept-process-output nil 0.01)
            (cl-incf samples)
            (when-let ((ghost (crucible-suggestion)))
              (cl-incf shown)
              (let ((line (buffer-substring-no-properties (line-beginning-position) (point))))
                (unless (equal ghost (format " + 0  # after %s" line))
                  (push (list line ghost) wrong)))))))
      ;; The last suggestion arrives: the test can see one (else it proves nothing).
      (let ((line (buffer-substring-no-properties (line-beginning-position) (point))))
        (should (equal (crucible-test--shown (format " + 0  # after %s" line))
                       (format " + 0  # after %s" line))))
      (message "stale test: %d samples, %d showed a suggestion" samples shown)
      (should-not wrong)
      ;; Keys came faster than the answers: the older requests were cancelled.
      (should (crucible-test--sent server "$/cancelRequest")))))

(ert-deftest crucible-mode-line-shows-the-server-state ()
  (crucible-test--with-buffer ("x = 1\n" :crucible t)
    (should (crucible-test--wait (lambda () (crucible-status-state)) 10))
    (should (member (crucible-status-state) '("ready" "busy")))
    ;; `format-mode-line' gives "" in --batch (no frame to draw on): evaluate the
    ;; mode's own entry in `minor-mode-alist' instead.
    (let ((entry (cadr (assq 'crucible-mode minor-mode-alist))))
      (should (eq (car-safe entry) :eval))
      (should (string-match-p "\\` Crucible:\\(ready\\|busy\\)\\'" (eval (cadr entry) t))))))

(ert-deftest crucible-status-and-clear-cache-commands ()
  (crucible-test--with-buffer ("x = 1\n" :crucible t)
    (crucible-status)
    (should (string-match-p "\"requests\"\\|\"status\""
                            (with-current-buffer "*crucible status*" (buffer-string))))
    (crucible-clear-cache)))

;;;; Alternatives

(ert-deftest crucible-next-and-previous-cycle-alternatives ()
  "M-n asks for alternatives (an explicit request) and shows the next; M-p goes back;
TAB accepts the one shown."
  (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
    (crucible-test--type "SPC SPC SPC SPC")
    (crucible-test--shown "return a + b")
    (crucible-test--type "M-n")
    (should (equal (crucible-test--shown "return sum((a, b))") "return sum((a, b))"))
    (crucible-test--type "M-p")
    (should (equal (crucible-suggestion) "return a + b"))
    (crucible-test--type "M-n")
    (should (equal (crucible-suggestion) "return sum((a, b))"))
    (crucible-test--type "TAB")
    (should (equal (buffer-string) "def add(a, b):\n    return sum((a, b))"))))

;;;; Set-up

(ert-deftest crucible-shared-server-command-runs-a-thin-client ()
  "The README's line for the shared daemon, `--shared' in `crucible-server-command', makes
the server eglot starts a thin client of a per-user daemon, which it starts in
XDG_RUNTIME_DIR; suggestions come through it.  CRUCIBLE_SHARED=0: the option alone decides."
  (let* ((runtime (make-temp-file (expand-file-name "runtime-" crucible-test--root) t))
         (socket (expand-file-name "crucible/daemon.sock" runtime))
         (pid-file (expand-file-name "crucible/daemon.pid" runtime))
         (process-environment (append (list (concat "XDG_RUNTIME_DIR=" runtime)
                                            "CRUCIBLE_SHARED=0")
                                      process-environment))
         (crucible-server-command '("crucible-lsp" "--stdio" "--shared")))
    (unwind-protect
        (crucible-test--with-buffer ("def add(a, b):\n" :crucible t)
          (should (member "--shared" (process-command (jsonrpc--process server))))
          (crucible-test--type "SPC SPC SPC SPC")
          (should (equal (crucible-test--shown "return a + b") "return a + b"))
          (should (file-exists-p socket))
          (should (eq (file-attribute-type (file-attributes socket)) nil))
          (should (string-prefix-p "s" (file-attribute-modes (file-attributes socket))))
          (should (file-exists-p pid-file)))
      ;; The daemon runs in a session of its own: end it rather than leave it waiting for
      ;; another window for CRUCIBLE_DAEMON_IDLE_S.
      (when (file-exists-p pid-file)
        (ignore-errors
          (signal-process (string-to-number (with-temp-buffer (insert-file-contents pid-file)
                                                              (buffer-string)))
                          'term))))))

(ert-deftest crucible-byte-compiles-without-warnings ()
  "crucible.el compiles on this Emacs with every warning an error."
  (let* ((source (expand-file-name "../crucible.el" (file-name-directory
                                                     (symbol-file 'crucible-test--wait))))
         (target (make-temp-file "crucible-" nil ".elc"))
         (byte-compile-dest-file-function (lambda (_) target))
         (byte-compile-error-on-warn t)
         (messages-start (with-current-buffer (messages-buffer) (point-max))))
    (unwind-protect
        (should (byte-compile-file source))
      (delete-file target))
    (should-not (with-current-buffer (messages-buffer)
                  (string-match-p "Warning" (buffer-substring messages-start (point-max)))))))

(ert-deftest crucible-eglot-setup-maps-modes-beside-their-server ()
  "python-mode and python-ts-mode share one entry whose contact runs the user's server
and Crucible through rass; a mode without a server gets Crucible alone; twice is once."
  (let ((eglot-server-programs '((python-mode . ("pylsp")) (go-mode . ("gopls"))))
        (crucible-major-modes '((python-mode (python-ts-mode :language-id "python"))
                                (lua-mode)))
        (crucible-multiplexer "rass")
        (eglot-managed-mode-hook nil))
    (crucible-eglot-setup)
    (crucible-eglot-setup)
    (should (= 3 (length eglot-server-programs)))
    (let* ((python (cl-find-if (lambda (e) (memq 'python-mode (ensure-list (car e))))
                               eglot-server-programs))
           (lua (cl-find-if (lambda (e) (memq 'lua-mode (ensure-list (car e))))
                            eglot-server-programs)))
      (should (equal (car python) '(python-mode (python-ts-mode :language-id "python"))))
      (should (functionp (cdr python)))
      (should (equal (assq 'go-mode eglot-server-programs) '(go-mode . ("gopls"))))
      (cl-letf (((symbol-function 'executable-find)
                 (lambda (name &rest _) (and (member name '("pylsp" "rass")) (concat "/bin/" name)))))
        (should (equal (funcall (cdr python) nil)
                       (list "/bin/rass" (crucible--rass-preset) "--quiet-server"
                             "--log-level" "warn" "--" "pylsp" "--" "crucible-lsp" "--stdio")))
        (should (equal (funcall (cdr lua) nil) '("crucible-lsp" "--stdio")))
        ;; Crucible's settings go under a `crucible' key beside another server
        ;; (the preset keeps that key from it); alone, bare.
        (let ((crucible-settings '(:completion (:debounce_ms 90))))
          (should (equal (last (funcall (cdr python) nil) 2)
                         '(:initializationOptions (:crucible (:completion (:debounce_ms 90))))))
          (should (equal (funcall (cdr lua) nil)
                         '("crucible-lsp" "--stdio"
                           :initializationOptions (:completion (:debounce_ms 90)))))))
      ;; Without rass the user's server stays, alone (and the user is told once).
      (cl-letf (((symbol-function 'executable-find)
                 (lambda (name &rest _) (and (equal name "pylsp") "/bin/pylsp")))
                (crucible--told nil))
        (should (equal (funcall (cdr python) nil) '("pylsp"))))
      ;; Without the user's server: Crucible alone.
      (cl-letf (((symbol-function 'executable-find) (lambda (&rest _) nil)))
        (should (equal (funcall (cdr python) nil) '("crucible-lsp" "--stdio")))))))

;;;; Diagnostics forwarding

(defun crucible-test--flymake-backend (report-fn &rest _)
  "A flymake backend with one diagnostic on line 1."
  (funcall report-fn
           (list (flymake-make-diagnostic (current-buffer) 1 2 :warning "test: x is unused"))))

(ert-deftest crucible-forwards-diagnostics-but-not-its-own ()
  (crucible-test--with-buffer ("x = 1\n" :crucible t)
    (let ((crucible-diagnostics-delay 0.1))
      ;; A diagnostic of Crucible's own, through eglot's own handler, as the server sends it.
      (eglot-handle-notification
       server 'textDocument/publishDiagnostics
       :uri (eglot--path-to-uri buffer-file-name)
       :diagnostics (vector (list :range (list :start (list :line 0 :character 0)
                                               :end (list :line 0 :character 1))
                                  :severity 3 :source "crucible"
                                  :message "crucible's own explanation")))
      (add-hook 'flymake-diagnostic-functions #'crucible-test--flymake-backend nil t)
      (flymake-start)
      (should (crucible-test--wait
               (lambda () (crucible-test--sent server "crucible/didChangeDiagnostics"))
               5))
      (crucible-test--pause 0.3)
      (let ((sent (crucible-test--sent server "crucible/didChangeDiagnostics")))
        ;; debounced and sent on change only: one notification for these reports
        (should (= 1 (length sent)))
        (should (string-match-p "test: x is unused" (car sent)))
        (should (string-match-p (regexp-quote (eglot--path-to-uri buffer-file-name)) (car sent)))
        (should-not (string-match-p "crucible's own explanation" (car sent)))))))

;;;; Beside another language server, through rass

(ert-deftest crucible-beside-ruff-through-rass ()
  "eglot runs ruff and Crucible together: ruff's diagnostics, Crucible's overlay."
  (skip-unless (and (executable-find "rass") (executable-find "ruff")))
  (let ((eglot-server-programs (cons '(python-mode . ("ruff" "server")) eglot-server-programs)))
    (crucible-test--with-buffer ("import os\n\ndef add(a, b):\n" :crucible t)
      (should (string-match-p "rass" (car (process-command (jsonrpc--process server)))))
      (should (eglot--server-capable :inlineCompletionProvider))
      (crucible-test--type "SPC SPC SPC SPC")
      (should (equal (crucible-test--shown "return a + b") "return a + b"))
      (crucible-test--type "TAB")
      (should (string-suffix-p "    return a + b" (buffer-string)))
      ;; ruff's diagnostic reaches flymake, and is forwarded to Crucible.
      (let ((crucible-diagnostics-delay 0.1))
        (should (crucible-test--wait
                 (lambda ()
                   (flymake-start)
                   (crucible-test--pause 0.1)
                   (cl-some (lambda (d) (string-match-p "F401" (flymake-diagnostic-text d)))
                            (flymake-diagnostics)))
                 15))
        (should (crucible-test--wait
                 (lambda () (cl-some (lambda (entry) (string-match-p "F401" entry))
                                     (crucible-test--sent server "crucible/didChangeDiagnostics")))
                 5))
        ;; crucible/status goes to Crucible, not to ruff (the preset's routing).
        (crucible-status)
        (should (string-match-p "\"requests\""
                                (with-current-buffer "*crucible status*" (buffer-string))))))))

;;; crucible-test.el ends here
