;;; crucible.el --- Crucible's AI inline suggestions in eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: languages, convenience
;; SPDX-License-Identifier: MIT

;;; Commentary:

;; Crucible is a language server (`crucible-lsp') that suggests code at the cursor.  This
;; file gives Emacs what eglot lacks for it:
;;
;; - `crucible-eglot-setup': Crucible for the common major modes, *beside* the language
;;   server you already use.  Eglot runs one server per major mode, so the two are joined
;;   by the `rass' multiplexer (PyPI: rassumfrassum) with the routing preset shipped next to
;;   this file (crucible-rass.py).  Without `rass', modes that have no server of their own
;;   get Crucible alone and the others keep theirs (said once).
;; - `crucible-mode': the suggestion drawn as an overlay after the cursor ("ghost text"),
;;   asked with `textDocument/inlineCompletion' on eglot's own connection.  TAB accepts it,
;;   M-f one word, C-e one line, M-n / M-p cycle alternatives, C-g dismisses (keys live in
;;   `crucible-suggestion-map', active only while a suggestion shows).  Crucible's state
;;   (`crucible/didChangeStatus') is in the mode line, and flymake's diagnostics are sent to
;;   it as `crucible/didChangeDiagnostics'.
;;
;; The one rule the overlay keeps: a suggestion is never shown for text it was not computed
;; for.  A reply is drawn only if the buffer and point are exactly as they were when it was
;; asked for; afterwards it stays only while what is typed is the start of it.
;;
;; Works with Emacs 28 + eglot 1.9 (Debian's elpa-eglot) and newer eglot / Emacs 29+.  It
;; uses these eglot/jsonrpc internals, present from eglot 1.9 / jsonrpc 1.0.14 on:
;; `eglot--TextDocumentPositionParams', `eglot--signal-textDocument/didChange',
;; `eglot--VersionedTextDocumentIdentifier', `eglot--recent-changes',
;; `eglot--pos-to-lsp-position', `eglot--lsp-position-to-point' and
;; `jsonrpc--async-request-1' (for the request id that `$/cancelRequest' needs; without it
;; stale requests are dropped on arrival but not cancelled).

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'jsonrpc)
(require 'eglot)

(defvar crucible-mode)
(require 'flymake)

(defgroup crucible nil
  "Crucible's AI inline suggestions through eglot."
  :group 'eglot
  :prefix "crucible-")

(defcustom crucible-server-command '("crucible-lsp" "--stdio")
  "How to start Crucible's language server."
  :type '(repeat string))

(defcustom crucible-multiplexer "rass"
  "The LSP multiplexer running Crucible beside another server (rassumfrassum).
nil: never multiplex; modes with a server of their own then keep it, without
Crucible."
  :type '(choice (const :tag "None" nil) string))

(defcustom crucible-settings nil
  "Crucible settings sent as initializationOptions (a plist, e.g.
\(:completion (:debounce_ms 100))).  Providers are best kept in
~/.config/crucible/config.toml."
  :type 'sexp)

(defcustom crucible-major-modes
  '((python-mode (python-ts-mode :language-id "python"))
    (js-mode (js-ts-mode :language-id "javascript")
             typescript-mode (typescript-ts-mode :language-id "typescript")
             (tsx-ts-mode :language-id "typescriptreact"))
    (c-mode (c-ts-mode :language-id "c") c++-mode (c++-ts-mode :language-id "cpp"))
    (go-mode (go-ts-mode :language-id "go"))
    (rust-mode (rust-ts-mode :language-id "rust"))
    (java-mode (java-ts-mode :language-id "java"))
    (ruby-mode (ruby-ts-mode :language-id "ruby"))
    (sh-mode (bash-ts-mode :language-id "shellscript"))
    (lua-mode (lua-ts-mode :language-id "lua")))
  "Groups of major modes `crucible-eglot-setup' gives Crucible.
Each group joins the `eglot-server-programs' entry that serves one of its
modes (one server for the group), or gets an entry of its own.  A mode is a
symbol or (MODE :language-id ID), as in `eglot-server-programs'."
  :type '(repeat (repeat sexp)))

(defcustom crucible-idle-delay 0.03
  "Seconds after an edit before asking for a suggestion.
The server waits a little more itself, adapted to the typing rhythm."
  :type 'number)

(defcustom crucible-diagnostics-delay 0.5
  "Seconds of quiet before flymake's diagnostics are sent to Crucible."
  :type 'number)

(defcustom crucible-own-diagnostic-source "\\`crucible"
  "Regexp of the LSP sources of Crucible's own diagnostics, never sent back."
  :type 'regexp)

(defcustom crucible-advertise-inline-completion t
  "Whether eglot tells servers it shows inline completions.
With t, Crucible keeps its suggestion out of the completion menu (the
overlay shows it); with nil the menu offers it too, for use without
`crucible-mode'.  Read when eglot connects."
  :type 'boolean)

(defface crucible-suggestion-face '((t :inherit shadow))
  "Face of the suggestion shown after the cursor.")

;;;; Multiplexing: Crucible beside the user's server

(defconst crucible--directory
  (file-name-directory (or load-file-name buffer-file-name default-directory))
  "Where this file lives, with the rass preset beside it.")

(defun crucible--rass-preset ()
  "The routing preset for `rass' shipped with crucible.el."
  (expand-file-name "crucible-rass.py" crucible--directory))

(defun crucible--program-args (contact)
  "Split CONTACT (PROGRAM ARGS... [:KEY VALUE...]) into (ARGS . PLIST)."
  (let ((tail (cl-position-if #'keywordp contact)))
    (cons (cl-subseq contact 0 tail) (and tail (cl-subseq contact tail)))))

(defun crucible--initialization-options (plist)
  "The initializationOptions of PLIST, plus `crucible-settings'.
Crucible reads its settings bare or under a `crucible' key; the key keeps
them apart from another server's options (the rass preset removes it from
what the other server gets)."
  (let ((theirs (plist-get plist :initializationOptions)))
    (cond ((null crucible-settings) theirs)
          ((null theirs) (list :crucible crucible-settings))
          ((functionp theirs)
           (lambda (server)
             (append (funcall theirs server) (list :crucible crucible-settings))))
          (t (append theirs (list :crucible crucible-settings))))))

(defun crucible--alone ()
  "The eglot contact that runs Crucible alone."
  (append crucible-server-command
          (when crucible-settings (list :initializationOptions crucible-settings))))

(defvar crucible--told nil
  "Modes already told that Crucible is not beside their server.")

(defun crucible--tell-once (mode format &rest args)
  "Say FORMAT with ARGS once for MODE."
  (unless (memq mode crucible--told)
    (push mode crucible--told)
    (apply #'message (concat "[crucible] " format) args)))

(defun crucible--beside (original interactive)
  "The eglot contact for Crucible beside ORIGINAL.
ORIGINAL is an `eglot-server-programs' value; INTERACTIVE as eglot passes
it to a contact function."
  (let* ((theirs (if (functionp original)
                     (condition-case nil (funcall original interactive) (error nil))
                   original))
         (split (and (consp theirs) (stringp (car theirs))
                     (cl-every #'stringp (car (crucible--program-args theirs)))
                     (crucible--program-args theirs)))
         (program (car (car split)))
         (rass (and crucible-multiplexer (executable-find crucible-multiplexer))))
    (cond
     ((null split)
      ;; Nothing runnable of theirs (none installed, or a TCP/class contact rass cannot
      ;; start): with no program found, Crucible alone; otherwise leave theirs.
      (if (or (null theirs) (functionp original))
          (crucible--alone)
        (crucible--tell-once
         major-mode "%s: its server is not a program rass can start; no Crucible here"
         major-mode)
        theirs))
     ((not (or (file-name-absolute-p program) (executable-find program)))
      (crucible--alone))
     ((null rass)
      (crucible--tell-once
       major-mode "%s keeps %s without Crucible: install rassumfrassum (`rass') to run both"
       major-mode program)
      theirs)
     (t
      (let ((options (crucible--initialization-options (cdr split))))
        (append (list rass (crucible--rass-preset) "--quiet-server" "--log-level" "warn" "--")
                (car split) (list "--") crucible-server-command
                (when options (list :initializationOptions options))))))))

(defvar crucible--contacts (make-hash-table :test #'eq :weakness 'key)
  "Contact functions made by `crucible-eglot-setup', to their original.")

(defun crucible--contact (original)
  "A contact function for Crucible beside ORIGINAL (nil: Crucible alone)."
  (let ((fn (lambda (&optional interactive)
              (if original (crucible--beside original interactive) (crucible--alone)))))
    (puthash fn (or original :alone) crucible--contacts)
    fn))

(defun crucible--mode-symbol (spec)
  "The major mode named by SPEC (MODE or (MODE :language-id ID))."
  (if (consp spec) (car spec) spec))

(defun crucible--entry-modes (entry)
  "The mode specs of an `eglot-server-programs' ENTRY, as a list."
  (let ((modes (car entry)))
    (if (or (symbolp modes) (keywordp (cadr modes))) (list modes) modes)))

;;;###autoload
(defun crucible-eglot-setup ()
  "Give each group of `crucible-major-modes' Crucible in `eglot-server-programs'.
An entry that already serves one of a group's modes keeps its server: its
contact is wrapped so that eglot runs that server and Crucible together
through `rass' (decided when eglot connects, so installing either later
needs no new set-up), and the group's other modes join it.  A group without
an entry gets Crucible alone.  Running it twice changes nothing more.  Also
turns `crucible-mode' on in eglot buffers (`crucible-eglot-managed')."
  (interactive)
  (dolist (group crucible-major-modes)
    (let* ((names (mapcar #'crucible--mode-symbol group))
           (entry (cl-find-if
                   (lambda (e)
                     (cl-intersection names (mapcar #'crucible--mode-symbol
                                                    (crucible--entry-modes e))))
                   eglot-server-programs)))
      (if (null entry)
          (push (cons group (crucible--contact nil)) eglot-server-programs)
        (let* ((modes (crucible--entry-modes entry))
               (have (mapcar #'crucible--mode-symbol modes))
               (joined (append modes (cl-remove-if (lambda (spec)
                                                     (memq (crucible--mode-symbol spec) have))
                                                   group)))
               (contact (cdr entry)))
          (setq eglot-server-programs
                (cons (cons joined (if (gethash contact crucible--contacts)
                                       contact
                                     (crucible--contact contact)))
                      (delq entry eglot-server-programs)))))))
  (add-hook 'eglot-managed-mode-hook #'crucible-eglot-managed))

(defun crucible--capable (&rest feats)
  "Whether the current server offers FEATS (public from eglot 1.16)."
  (apply (if (fboundp 'eglot-server-capable) 'eglot-server-capable 'eglot--server-capable)
         feats))

(defun crucible-eglot-managed ()
  "Turn `crucible-mode' on where the eglot server offers inline completion.
For `eglot-managed-mode-hook' (`crucible-eglot-setup' adds it)."
  (crucible-mode (if (and (eglot-managed-p) (crucible--capable :inlineCompletionProvider))
                     1 -1)))

(cl-defmethod eglot-client-capabilities :around (_server)
  "Announce inline completions (`crucible-advertise-inline-completion')."
  (let ((caps (cl-call-next-method)))
    (if (not crucible-advertise-inline-completion)
        caps
      (plist-put caps :textDocument
                 (append (plist-get caps :textDocument)
                         (list :inlineCompletion '(:dynamicRegistration :json-false)))))))

;;;; Status, from crucible/didChangeStatus

(defvar crucible--status (make-hash-table :test #'eq :weakness 'key)
  "Each server's last `crucible/didChangeStatus' params (a plist).")

(cl-defmethod eglot-handle-notification
  (server (_method (eql crucible/didChangeStatus)) &rest params)
  "Keep SERVER's state (PARAMS: state, message, providers) for the mode line."
  (puthash server params crucible--status)
  (force-mode-line-update t))

(defun crucible-status-state ()
  "Crucible's state for the current buffer: \"ready\", \"busy\", \"degraded\",
\"offline\", \"disabled\", or nil before the server said."
  (when-let ((server (eglot-current-server))
             (status (gethash server crucible--status)))
    (plist-get status :state)))

(defun crucible--lighter ()
  "The mode-line text of `crucible-mode'."
  (let* ((state (or (crucible-status-state) "starting"))
         (message (when-let ((server (eglot-current-server)))
                    (plist-get (gethash server crucible--status) :message))))
    (propertize (concat " Crucible:" state)
                'face (pcase state
                        ((or "offline" "disabled") 'error)
                        ("degraded" 'warning)
                        (_ nil))
                'help-echo (or message "Crucible"))))

;;;; Showing a suggestion

(defvar-local crucible--overlay nil "The overlay showing the suggestion, or nil.")

(cl-defstruct (crucible--shown (:constructor crucible--shown-make) (:copier nil))
  "A suggestion on screen.
ITEMS: each (TEXT . REPLACES), TEXT the part after the cursor, REPLACES how
many characters after the cursor it replaces; INDEX: the one shown; START:
a marker where it begins; SIZE: the buffer size when shown; TYPED: the
characters typed into it since."
  items (index 0) start size (typed 0))

(defvar-local crucible--shown nil "The `crucible--shown' on screen, or nil.")

(defvar-local crucible--want-next nil
  "Non-nil: the user asked for another alternative; show the reply's second item.")

(defvar-local crucible--suggestion-active nil
  "Non-nil while a suggestion shows: turns `crucible-suggestion-map' on.")

(defvar crucible-suggestion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'crucible-accept)
    (define-key map (kbd "<tab>") #'crucible-accept)
    (define-key map (kbd "M-f") #'crucible-accept-word)
    (define-key map (kbd "C-e") #'crucible-accept-line)
    (define-key map (kbd "M-n") #'crucible-next)
    (define-key map (kbd "M-p") #'crucible-previous)
    (define-key map (kbd "C-g") #'crucible-dismiss)
    map)
  "Keys active while a suggestion shows.")

(defvar crucible--emulation-alist
  `((crucible--suggestion-active . ,crucible-suggestion-map)))

(add-to-list 'emulation-mode-map-alists 'crucible--emulation-alist)

(defun crucible--rest ()
  "The text still to show: the current item after what was typed into it."
  (when crucible--shown
    (let ((text (car (nth (crucible--shown-index crucible--shown)
                          (crucible--shown-items crucible--shown)))))
      (substring text (min (length text) (crucible--shown-typed crucible--shown))))))

(defun crucible--replaced ()
  "How many characters after point the shown item replaces, on this line."
  (let* ((shown crucible--shown)
         (item (nth (crucible--shown-index shown) (crucible--shown-items shown))))
    (min (cdr item) (- (line-end-position) (point)))))

(defun crucible--draw ()
  "Draw `crucible--shown' at point, or clear when nothing is left of it.
The ghost text goes after point; when the item replaces characters after
point (a closing bracket the editor inserted), it is drawn over them, so
that the screen shows the line as accepting would leave it."
  (let ((rest (crucible--rest)))
    (if (or (null rest) (string-empty-p rest))
        (crucible-clear)
      (let ((ghost (propertize rest 'face 'crucible-suggestion-face))
            (replaced (crucible--replaced)))
        ;; The cursor stays before the ghost text, where typing goes.
        (put-text-property 0 1 'cursor t ghost)
        (unless (overlayp crucible--overlay)
          (setq crucible--overlay (make-overlay (point) (point) nil nil t))
          (overlay-put crucible--overlay 'crucible t)
          (overlay-put crucible--overlay 'priority 100))
        (move-overlay crucible--overlay (point) (+ (point) replaced))
        (overlay-put crucible--overlay (if (> replaced 0) 'display 'after-string) ghost)
        (overlay-put crucible--overlay (if (> replaced 0) 'after-string 'display) nil)
        (setq crucible--suggestion-active t)))))

(defun crucible-clear ()
  "Remove the suggestion from the screen."
  (when (overlayp crucible--overlay) (delete-overlay crucible--overlay))
  (when (and crucible--shown (markerp (crucible--shown-start crucible--shown)))
    (set-marker (crucible--shown-start crucible--shown) nil))
  (setq crucible--overlay nil crucible--shown nil crucible--suggestion-active nil
        crucible--want-next nil))

(defun crucible-suggestion ()
  "The suggestion shown after point (without text properties), or nil."
  (when (overlayp crucible--overlay)
    (substring-no-properties (or (overlay-get crucible--overlay 'after-string)
                                 (overlay-get crucible--overlay 'display)
                                 ""))))

(defun crucible--still-fits ()
  "Whether the buffer still fits `crucible--shown'.
Since it was drawn, only its own next characters were typed at its start,
and point is after them."
  (let* ((shown crucible--shown)
         (start (crucible--shown-start shown))
         (typed (- (point) start))
         (text (car (nth (crucible--shown-index shown) (crucible--shown-items shown)))))
    (and (>= typed 0)
         (= (buffer-size) (+ (crucible--shown-size shown) typed))
         (<= typed (length text))
         (string= (buffer-substring-no-properties start (point)) (substring text 0 typed))
         (progn (setf (crucible--shown-typed shown) typed) t))))

;;;; Asking the server

(defvar-local crucible--pending nil
  "The request in flight: (SERVER ID), or nil.")

(defvar-local crucible--generation 0
  "Counts requests; a reply for an older one is dropped.")

(defvar-local crucible--timer nil "The idle timer of the next request.")


(defun crucible--cancel ()
  "Forget the request in flight and tell the server (`$/cancelRequest')."
  (cl-incf crucible--generation)
  (when crucible--timer (cancel-timer crucible--timer) (setq crucible--timer nil))
  (pcase crucible--pending
    (`(,server ,id)
     (when (and id (jsonrpc-running-p server))
       (ignore-errors (jsonrpc-notify server :$/cancelRequest (list :id id))))))
  (setq crucible--pending nil))

(defun crucible--items (result point)
  "The items of an InlineCompletion RESULT that fit the buffer at POINT.
Each is (TEXT . REPLACES): TEXT is what goes after POINT."
  (let ((items (if (vectorp result) result (plist-get result :items))))
    (cl-loop
     for item across (or items [])
     for insert = (plist-get item :insertText)
     for text = (if (stringp insert) insert (plist-get insert :value))
     for range = (plist-get item :range)
     for beg = (if range (eglot--lsp-position-to-point (plist-get range :start)) point)
     for end = (if range (eglot--lsp-position-to-point (plist-get range :end)) point)
     for before = (- point beg)
     ;; The range starts at or before point and the text it covers up to point is where
     ;; the suggestion starts: only the rest is new.
     when (and (stringp text) (<= beg point end) (<= before (length text))
               (string= (buffer-substring-no-properties beg point) (substring text 0 before))
               (> (length text) before))
     collect (cons (substring text before) (- end point)))))

(defun crucible--on-result (buffer generation tick point result)
  "Show RESULT in BUFFER if nothing changed since it was asked for.
That is: GENERATION is still the newest request, TICK is still the
`buffer-chars-modified-tick' and POINT still point."
  (when (buffer-live-p buffer)
    (with-current-buffer buffer
      (when (= generation crucible--generation)
        (setq crucible--pending nil)
        (when (and crucible-mode
                   (= tick (buffer-chars-modified-tick))
                   (= point (point)))
          (let ((items (crucible--items result point))
                (cycle crucible--want-next))
            (setq crucible--want-next nil)
            (crucible-clear)
            (when items
              (setq crucible--shown
                    (crucible--shown-make :items items :index (if (and cycle (cdr items)) 1 0)
                                          :start (copy-marker point) :size (buffer-size)))
              (crucible--draw))))))))

(defun crucible--request (&optional invoked)
  "Ask the server for a suggestion at point.
INVOKED: the user asked explicitly."
  (crucible--cancel)
  (when-let ((server (eglot-current-server)))
    ;; eglot sends changes when idle; the server must have them before it is asked.
    (when eglot--recent-changes (eglot--signal-textDocument/didChange))
    (let* ((buffer (current-buffer))
           (generation crucible--generation)
           (tick (buffer-chars-modified-tick))
           (point (point))
           (params (append (eglot--TextDocumentPositionParams)
                           (list :context (list :triggerKind (if invoked 1 2)))))
           (on-result (lambda (result)
                        (crucible--on-result buffer generation tick point result)))
           (sent (if (fboundp 'jsonrpc--async-request-1)
                     (jsonrpc--async-request-1
                      server :textDocument/inlineCompletion params
                      :success-fn on-result :error-fn #'ignore :timeout-fn #'ignore
                      :timeout 30)
                   (jsonrpc-async-request
                    server :textDocument/inlineCompletion params
                    :success-fn on-result :error-fn #'ignore :timeout-fn #'ignore
                    :timeout 30)))
           (id (and (consp sent) (integerp (car sent)) (car sent))))
      (setq crucible--pending (list server id)))))

(defun crucible--schedule ()
  "Ask for a suggestion `crucible-idle-delay' seconds from now.
Each command cancels the previous timer, so a key typed within the delay
replaces the request.  (A plain timer: idle ones never run in `--batch'.)"
  (when crucible--timer (cancel-timer crucible--timer))
  (let ((buffer (current-buffer)))
    (setq crucible--timer
          (run-with-timer
           crucible-idle-delay nil
           (lambda ()
             (when (buffer-live-p buffer)
               (with-current-buffer buffer
                 (setq crucible--timer nil)
                 (when (and crucible-mode (eq buffer (window-buffer (selected-window))))
                   (crucible--request)))))))))

(defvar-local crucible--last-tick nil
  "`buffer-chars-modified-tick' after the last command.")
(defvar-local crucible--last-point nil "Point after the last command.")

(defun crucible--post-command ()
  "After each command: keep, shorten or clear the suggestion; ask again."
  (let ((changed (not (eql crucible--last-tick (buffer-chars-modified-tick))))
        (moved (not (eql crucible--last-point (point)))))
    (setq crucible--last-tick (buffer-chars-modified-tick)
          crucible--last-point (point))
    (cond
     ((memq this-command '(crucible-next crucible-previous crucible-complete crucible-dismiss)))
     (changed
      (if (and crucible--shown (crucible--still-fits))
          (crucible--draw)
        (crucible-clear))
      (crucible--cancel)
      (crucible--schedule))
     (moved
      (crucible-clear)
      (crucible--cancel)))))

;;;; Commands

(defun crucible--insert (text)
  "Insert TEXT of the shown suggestion at point.
When TEXT is all that is left, also replace what the item replaces."
  (let* ((shown crucible--shown)
         (item (nth (crucible--shown-index shown) (crucible--shown-items shown)))
         (all (string= text (crucible--rest))))
    (when (and all (> (cdr item) 0))
      (delete-region (point) (min (point-max) (+ (point) (cdr item)))))
    (insert text)))

(defun crucible-accept ()
  "Insert the whole suggestion."
  (interactive)
  (when-let ((rest (crucible--rest)))
    (crucible--insert rest)
    (crucible-clear)))

(defun crucible--accept-part (regexp)
  "Insert the start of the suggestion that REGEXP matches; show the rest."
  (when-let ((rest (crucible--rest)))
    (let ((part (if (string-match regexp rest) (match-string 0 rest) rest)))
      (when (string-empty-p part) (setq part rest))
      (crucible--insert part)
      (if (string= part rest) (crucible-clear)))))

(defun crucible-accept-word ()
  "Insert the next word of the suggestion (with the blanks before it)."
  (interactive)
  (crucible--accept-part "\\`\\(?:\n[ \t]*\\|[ \t]*\\(?:\\(?:\\sw\\|\\s_\\)+\\|[^[:space:]]\\)\\)"))

(defun crucible-accept-line ()
  "Insert the suggestion up to the end of its first line.
When it starts with a line break, insert that and the next indentation."
  (interactive)
  (crucible--accept-part "\\`\\(?:\n[ \t]*\\|[^\n]+\\)"))

(defun crucible-dismiss ()
  "Hide the suggestion, forget the request in flight."
  (interactive)
  (crucible--cancel)
  (crucible-clear))

(defun crucible-next (&optional step)
  "Show the next alternative (STEP -1: the previous).
With none yet, ask for some (an explicit request)."
  (interactive)
  (let ((count (and crucible--shown (length (crucible--shown-items crucible--shown)))))
    (if (and count (> count 1))
        (progn
          (setf (crucible--shown-index crucible--shown)
                (mod (+ (crucible--shown-index crucible--shown) (or step 1)) count))
          (crucible--draw))
      ;; Crucible samples alternatives only for an explicit request.
      (crucible--request t)
      (setq crucible--want-next (and crucible--shown t)))))

(defun crucible-previous ()
  "Show the previous alternative."
  (interactive)
  (crucible-next -1))

(defun crucible-complete ()
  "Ask for a suggestion at point now."
  (interactive)
  (crucible-clear)
  (crucible--request t))

(defun crucible-status ()
  "Show `crucible/status' (providers, cache, timings) in a buffer."
  (interactive)
  (let ((status (jsonrpc-request (eglot--current-server-or-lose) :crucible/status
                                  (make-hash-table))))
    (with-help-window "*crucible status*"
      (princ (with-temp-buffer
               (insert (json-encode status))
               (json-pretty-print-buffer)
               (buffer-string))))))

(defun crucible-clear-cache ()
  "Empty Crucible's caches (the `crucible.clearCache' command)."
  (interactive)
  (let ((held (jsonrpc-request (eglot--current-server-or-lose) :workspace/executeCommand
                               '(:command "crucible.clearCache" :arguments []))))
    (message "[crucible] cache cleared: %S" held)))

;;;; Diagnostics, sent to Crucible

(defvar-local crucible--diagnostics-timer nil)
(defvar-local crucible--diagnostics-sent nil
  "The last diagnostics sent (only changes are sent).")

(defun crucible--lsp-diagnostic (diag)
  "Flymake diagnostic DIAG as an LSP Diagnostic, or nil when it is Crucible's."
  (let ((lsp (alist-get 'eglot-lsp-diag (ignore-errors (flymake-diagnostic-data diag)))))
    (if lsp
        (unless (and (stringp (plist-get lsp :source))
                     (string-match-p crucible-own-diagnostic-source (plist-get lsp :source)))
          lsp)
      (list :range (list :start (eglot--pos-to-lsp-position (flymake-diagnostic-beg diag))
                         :end (eglot--pos-to-lsp-position (flymake-diagnostic-end diag)))
            :severity (pcase (flymake--severity (flymake-diagnostic-type diag))
                        ((pred (<= (warning-numeric-level :error))) 1)
                        ((pred (<= (warning-numeric-level :warning))) 2)
                        (_ 3))
            :source (format "%s" (flymake-diagnostic-backend diag))
            :message (flymake-diagnostic-text diag)))))

(defun crucible--send-diagnostics ()
  "Send the buffer's diagnostics (without Crucible's own) if they changed."
  (setq crucible--diagnostics-timer nil)
  (when-let ((server (and crucible-mode (eglot-current-server))))
    (let ((diagnostics (vconcat (delq nil (mapcar #'crucible--lsp-diagnostic
                                                  (flymake-diagnostics))))))
      (unless (equal diagnostics crucible--diagnostics-sent)
        (setq crucible--diagnostics-sent diagnostics)
        (when eglot--recent-changes (eglot--signal-textDocument/didChange))
        (jsonrpc-notify server :crucible/didChangeDiagnostics
                        (list :textDocument (eglot--VersionedTextDocumentIdentifier)
                              :diagnostics diagnostics))))))

(defun crucible--diagnostics-changed (&rest _)
  "Flymake reported: send the diagnostics after `crucible-diagnostics-delay'."
  (when crucible-mode
    (when crucible--diagnostics-timer (cancel-timer crucible--diagnostics-timer))
    (let ((buffer (current-buffer)))
      (setq crucible--diagnostics-timer
            (run-with-timer crucible-diagnostics-delay nil
                            (lambda ()
                              (when (buffer-live-p buffer)
                                (with-current-buffer buffer
                                  (crucible--send-diagnostics)))))))))

;; Flymake has no hook for "diagnostics changed"; every backend's report goes through
;; this function (flymake 1.2 in Emacs 28 up to flymake 1.3+), in the reported buffer.
(advice-add 'flymake--handle-report :after #'crucible--diagnostics-changed)

;;;; The minor mode

(defvar crucible-mode-map (make-sparse-keymap)
  "Keys of `crucible-mode' at all times (none by default; see
`crucible-suggestion-map' for those active while a suggestion shows).")

;;;###autoload
(define-minor-mode crucible-mode
  "Crucible's suggestions after the cursor in an eglot buffer.
\\<crucible-suggestion-map>While one shows: \\[crucible-accept] accepts it,
\\[crucible-accept-word] one word, \\[crucible-accept-line] one line,
\\[crucible-next] / \\[crucible-previous] cycle alternatives,
\\[crucible-dismiss] dismisses."
  :lighter (:eval (crucible--lighter))
  (crucible-clear)
  (crucible--cancel)
  (if crucible-mode
      (progn
        (setq crucible--last-tick (buffer-chars-modified-tick)
              crucible--last-point (point)
              crucible--diagnostics-sent nil)
        (add-hook 'post-command-hook #'crucible--post-command nil t))
    (remove-hook 'post-command-hook #'crucible--post-command t)
    (when crucible--diagnostics-timer (cancel-timer crucible--diagnostics-timer))))

(provide 'crucible)
;;; crucible.el ends here
